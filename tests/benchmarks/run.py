"""Benchmarks for the capture path (not part of the test run): ``make bench``.

1. Per-call overhead: ``chat.completions.create`` through ``finetuner_otel.instrument()`` (its
   processor and exporter, content capture on) versus the bare SDK, both over the same in-process
   HTTP transport, so the figure is our cost alone. Each case runs in its own process; the cases
   alternate, several times, and the ratio is of their medians. Non-streaming and streaming.
2. Exporter throughput: spans per second from ``export()`` to rows queryable in DuckDB, with 2 KB
   of messages per span.

    python tests/benchmarks/run.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
PROMPT = "Classify this support ticket. " + "The order arrived late and the box was damaged. " * 40

COMPLETION = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1731368630,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "shipping_damage", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 420, "completion_tokens": 3, "total_tokens": 423},
    "system_fingerprint": "fp_bench",
}


def _sse_body() -> bytes:
    base = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1731368630,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_bench",
    }
    pieces = [{"role": "assistant", "content": ""}] + [
        {"content": w}
        for w in ["The", "order", "shipping", "damage", "category", "applies", "here", "."]
    ]
    lines = [
        json.dumps(
            {**base, "choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": None}]}
        )
        for d in pieces
    ]
    lines.append(
        json.dumps(
            {
                **base,
                "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
            }
        )
    )
    return "".join(f"data: {line}\n\n" for line in [*lines, "[DONE]"]).encode()


def _client():  # type: ignore[no-untyped-def]
    import openai

    try:
        import httpx2 as httpx
    except ImportError:  # SDKs before httpx2
        import httpx  # type: ignore[no-redef]

    body = json.dumps(COMPLETION).encode()
    sse = _sse_body()

    def handler(request):  # type: ignore[no-untyped-def]
        if b'"stream":true' in request.content.replace(b" ", b""):
            return httpx.Response(200, content=sse, headers={"content-type": "text/event-stream"})
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    return openai.OpenAI(
        api_key="sk-bench",
        base_url="http://bench.invalid/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )


def run_case(case: str, mode: str, calls: int, db: str) -> None:
    """In a child process: time ``calls`` calls and print the per-call seconds as JSON."""
    if case == "ours":
        import finetuner_otel

        finetuner_otel.instrument(db)
    client = _client()
    messages = [
        {"role": "system", "content": "You are a support ticket classifier."},
        {"role": "user", "content": PROMPT},
    ]
    stream = mode == "stream"

    def one() -> None:
        result = client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, temperature=0, stream=stream
        )
        if stream:
            for _ in result:
                pass

    for _ in range(200):  # warm up
        one()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        one()
        times.append(time.perf_counter() - start)
    print(json.dumps(statistics.median(times)))


def overhead(repeats: int, calls: int) -> None:
    print(f"Per-call time, median of {calls} calls per process, {repeats} processes per case")
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("plain", "stream"):
            results: dict[str, list[float]] = {"bare": [], "ours": []}
            for i in range(repeats):
                for case in ("bare", "ours") if i % 2 == 0 else ("ours", "bare"):
                    db = os.path.join(tmp, f"{mode}-{i}.duckdb")
                    out = subprocess.run(
                        [
                            sys.executable,
                            str(HERE),
                            "--case",
                            case,
                            "--mode",
                            mode,
                            "--calls",
                            str(calls),
                            "--db",
                            db,
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    results[case].append(json.loads(out.stdout.strip().splitlines()[-1]))
            for case, values in results.items():
                print(
                    f"  {mode:6} {case:4}: min {min(values) * 1e6:7.1f} µs  "
                    f"median {statistics.median(values) * 1e6:7.1f} µs  "
                    f"max {max(values) * 1e6:7.1f} µs"
                )
            ratio = statistics.median(results["ours"]) / statistics.median(results["bare"])
            print(f"  {mode:6} overhead ratio (ours / bare SDK, medians): {ratio:.3f}")


def exporter_throughput(spans_count: int) -> None:
    from finetuner_otel.exporters import DuckDBSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from finetuner_otel import Store

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    content = "x" * 2000
    for i in range(spans_count):
        with tracer.start_as_current_span("chat gpt-4o-mini") as span:
            span.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "finetuner.dataset": "bench",
                    "gen_ai.input.messages": json.dumps(
                        [{"role": "user", "parts": [{"type": "text", "content": f"{i} {content}"}]}]
                    ),
                    "gen_ai.output.messages": json.dumps(
                        [
                            {
                                "role": "assistant",
                                "parts": [{"type": "text", "content": "label"}],
                                "finish_reason": "stop",
                            }
                        ]
                    ),
                    "gen_ai.usage.input_tokens": 500,
                    "gen_ai.usage.output_tokens": 1,
                }
            )
    spans = memory.get_finished_spans()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        exporter = DuckDBSpanExporter(db)  # default settings, as instrument() uses them
        start = time.perf_counter()
        for i in range(0, len(spans), 512):  # BatchSpanProcessor's default batch size
            exporter.export(spans[i : i + 512])
        exporter.force_flush()
        count = Store(db).sql("SELECT count(*) FROM calls").rows[0][0]
        elapsed = time.perf_counter() - start
        exporter.shutdown()
    assert count == spans_count, count
    print(
        f"Exporter: {spans_count} spans (2 KB of messages each) export() -> queryable rows "
        f"in {elapsed:.2f} s = {spans_count / elapsed:,.0f} spans/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, for a smoke run")
    parser.add_argument("--case", choices=["bare", "ours"])
    parser.add_argument("--mode", choices=["plain", "stream"], default="plain")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--db")
    args = parser.parse_args()
    if args.case:
        run_case(args.case, args.mode, args.calls, args.db)
        return
    print(f"Python {sys.version.split()[0]} on {os.cpu_count()} CPUs")
    if args.quick:
        overhead(repeats=2, calls=300)
        exporter_throughput(5000)
    else:
        overhead(repeats=5, calls=2000)
        exporter_throughput(20000)


if __name__ == "__main__":
    main()
