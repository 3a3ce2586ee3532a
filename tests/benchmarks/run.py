"""Benchmarks for the capture path (not part of the test run): ``make bench``.

1. Per-call overhead: ``chat.completions.create`` through ``finetuner_otel.instrument()`` (its
   processor and exporter, content capture on) versus the bare SDK, both over the same in-process
   HTTP transport, so the figure is our cost alone. Blocks of bare and instrumented calls
   alternate in the same process (see ``run_rounds``); the ratio is taken per round, and its
   median, min and max over every round are printed: for the caller's wall-clock time per call,
   and for the process's CPU time per call with the export and ingest work included.
   Non-streaming and streaming.
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


def run_rounds(mode: str, rounds: int, calls: int, db: str) -> None:
    """In a child process: alternate blocks of bare and instrumented calls; print JSON per round.

    Both cases run in the same process, back to back, so they see the same machine state (this
    machine's speed drifts between processes by up to 2x). Capture is switched on and off by
    instrumenting and uninstrumenting the SDK; the tracer provider, span processor and exporter
    that ``instrument()`` installed stay in place. After each instrumented block the handle is
    flushed, so all the export and ingest work the block caused counts in its CPU time and none
    spills into the next bare block.
    """
    import finetuner_otel
    from finetuner_otel.instrumentation import OpenAIInstrumentor

    handle = finetuner_otel.instrument(db)
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

    def block(case: str) -> dict[str, float]:
        instrumentor = OpenAIInstrumentor()
        if case == "ours":
            instrumentor.instrument(tracer_provider=handle.tracer_provider)
        else:
            instrumentor.uninstrument()
        times = []
        cpu_start = time.process_time()
        for _ in range(calls):
            start = time.perf_counter()
            one()
            times.append(time.perf_counter() - start)
        if case == "ours":
            assert handle.flush()
        return {"wall": statistics.median(times), "cpu": (time.process_time() - cpu_start) / calls}

    block("ours")  # warm up both paths, and create the store
    block("bare")
    results = []
    for i in range(rounds):
        order = ("bare", "ours") if i % 2 == 0 else ("ours", "bare")
        results.append({case: block(case) for case in order})
    handle.shutdown()
    print(json.dumps(results))


def overhead(processes: int, rounds: int, calls: int) -> None:
    print(
        f"Per-call overhead: {processes} processes x {rounds} rounds, each round {calls} bare and "
        f"{calls} instrumented calls back to back in the same process"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("plain", "stream"):
            rounds_out: list[dict[str, dict[str, float]]] = []
            for i in range(processes):
                out = subprocess.run(
                    [
                        sys.executable,
                        str(HERE),
                        "--rounds-of",
                        mode,
                        "--rounds",
                        str(rounds),
                        "--calls",
                        str(calls),
                        "--db",
                        os.path.join(tmp, f"{mode}-{i}.duckdb"),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                rounds_out += json.loads(out.stdout.strip().splitlines()[-1])
            for case in ("bare", "ours"):
                walls = [r[case]["wall"] * 1e6 for r in rounds_out]
                cpus = [r[case]["cpu"] * 1e6 for r in rounds_out]
                print(
                    f"  {mode:6} {case:4}: wall median per call {statistics.median(walls):7.1f} µs"
                    f" (rounds {min(walls):.1f}..{max(walls):.1f});  CPU per call, export and "
                    f"ingest included {statistics.median(cpus):7.1f} µs"
                )
            for metric, label in (("wall", "wall-clock"), ("cpu", "CPU, export+ingest incl.")):
                ratios = [r["ours"][metric] / r["bare"][metric] for r in rounds_out]
                print(
                    f"  {mode:6} ratio ours / bare SDK, {label:25}: median "
                    f"{statistics.median(ratios):.3f}  (min {min(ratios):.3f}, "
                    f"max {max(ratios):.3f})"
                )


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
    parser.add_argument("--rounds-of", choices=["plain", "stream"], help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=5, help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=1000, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds_of:
        run_rounds(args.rounds_of, args.rounds, args.calls, args.db)
        return
    print(f"Python {sys.version.split()[0]} on {os.cpu_count()} CPUs")
    if args.quick:
        overhead(processes=1, rounds=4, calls=300)
        exporter_throughput(5000)
    else:
        overhead(processes=3, rounds=6, calls=1000)
        exporter_throughput(20000)


if __name__ == "__main__":
    main()
