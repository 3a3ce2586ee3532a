"""Benchmarks for the capture path (not part of the test run): ``make bench``.

1. Per-call overhead: ``chat.completions.create`` through ``finetuner_otel.instrument()`` (its
   processor and exporter, content capture on) versus the bare SDK, both over the same in-process
   HTTP transport, so the figure is our cost alone. Short blocks of bare and instrumented calls
   alternate in the same process (see ``run_rounds``); the ratio of the caller's wall-clock time
   per call is taken per round, and its median, min and max are printed, with the CPU time the
   export and ingest threads spent per call. Non-streaming, streaming, and the cost per chunk
   of a long stream (500 chunks). Beside them, the floor that any instrumentation built on the
   OTel SDK pays: one SDK span with the same attributes (computed beforehand) and no processor.
2. Exporter throughput: spans per second from ``export()`` to rows queryable in DuckDB, with 2 KB
   of messages per span. Then steady traffic: calls paced at a few rates, and the CPU the app
   and its ingest helper spend per call, against a bare call's.
3. Bursts: 100,000 GenAI spans ended as fast as a loop can, through what ``instrument()``
   installs, in a process of their own: peak RSS against the same loop with no exporter.
4. ``finetuner serve``: spans/s from the SDK's OTLP/HTTP exporter to rows queryable in the
   store, and the receiver's peak RSS, against the in-process exporter in the same run.
5. Dataset export: 100,000 examples from the store to OpenAI chat JSONL with
   ``store.get_dataset(...).to_jsonl()`` (snapshot recorded), against DuckDB's own ``COPY ... TO``
   of the same rows from the ``examples`` view (the floor).

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
import threading
import time
from pathlib import Path
from typing import Any

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


LONG_STREAM_CHUNKS = 500


def _sse_body(words: list[str] | None = None) -> bytes:
    base = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1731368630,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_bench",
    }
    words = words or ["The", "order", "shipping", "damage", "category", "applies", "here", "."]
    pieces = [{"role": "assistant", "content": ""}] + [{"content": w} for w in words]
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
    long_sse = _sse_body([f"w{i} " for i in range(LONG_STREAM_CHUNKS)])

    def handler(request):  # type: ignore[no-untyped-def]
        if b'"stream":true' in request.content.replace(b" ", b""):
            data = long_sse if b'"model":"long"' in request.content else sse
            return httpx.Response(200, content=data, headers={"content-type": "text/event-stream"})
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    return openai.OpenAI(
        api_key="sk-bench",
        base_url="http://bench.invalid/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )


def _background_cpu_seconds() -> float | None:
    """CPU time used so far by every thread of this process but the main one (the span
    processor's export thread and our ingest thread). Linux only; None elsewhere."""
    try:
        return _cpu_seconds(but=threading.main_thread().native_id)
    except OSError:
        return None


def run_rounds(mode: str, rounds: int, calls: int, db: str) -> None:
    """In a child process: alternate short blocks of bare and instrumented calls; print JSON.

    Both cases run in the same process, a few dozen calls at a time, so they see the same
    machine state (this machine's speed drifts by up to 2x over seconds). Capture is switched on
    and off by instrumenting and uninstrumenting the SDK; the tracer provider, span processor
    and exporter that ``instrument()`` installed stay in place and work as they would in an app.

    Printed: each block's median wall-clock time per call, and the CPU time that exporting and
    ingesting all instrumented calls took, per call: the export and ingest threads' CPU time
    plus the final flush's (which does the work that is left on the main thread).
    """
    import finetuner_otel
    from finetuner_otel.instrumentation import OpenAIInstrumentor

    handle = finetuner_otel.instrument(db)
    instrumentor = OpenAIInstrumentor()
    client = _client()
    messages = [
        {"role": "system", "content": "You are a support ticket classifier."},
        {"role": "user", "content": PROMPT},
    ]
    stream = mode in ("stream", "chunks")
    model = "long" if mode == "chunks" else "gpt-4o-mini"

    def one() -> None:
        result = client.chat.completions.create(
            model=model, messages=messages, temperature=0, stream=stream
        )
        if stream:
            for _ in result:
                pass

    # The floor any OTel-SDK instrumentation pays: one SDK span around the bare call, with the
    # attributes ours records (computed once, beforehand), from a provider with no processor.
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import SpanKind

    from finetuner_otel.instrumentation import _content
    from finetuner_otel.instrumentation._options import CaptureOptions

    floor_tracer = TracerProvider().get_tracer("floor")
    request = {"model": model, "messages": messages, "temperature": 0}
    options = CaptureOptions()
    request_attrs = _content.request_attributes(request, client.chat.completions, options)
    response_attrs = _content.response_attributes(
        client.chat.completions.create(**request), options
    )

    def one_floor() -> None:
        span = floor_tracer.start_span(
            "chat gpt-4o-mini", kind=SpanKind.CLIENT, attributes=request_attrs
        )
        one()
        span.set_attributes(response_attrs)
        span.end()

    def block(case: str) -> float:
        if case == "ours":
            instrumentor.instrument(tracer_provider=handle.tracer_provider)
        else:
            instrumentor.uninstrument()
        call = one_floor if case == "floor" else one
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    for _ in range(5):  # warm up both paths, and create the store
        block("ours")
        block("bare")
    assert handle.flush()
    background_before = _background_cpu_seconds()
    results = []
    for i in range(rounds):
        order = ("bare", "floor", "ours") if i % 2 == 0 else ("ours", "floor", "bare")
        results.append({case: block(case) for case in order})
    flush_start = time.thread_time()
    assert handle.flush()  # exports and ingests what is left on this thread
    flush_cpu = time.thread_time() - flush_start
    background_after = _background_cpu_seconds()
    background = (
        (background_after - background_before + flush_cpu) / (rounds * calls)
        if background_before is not None and background_after is not None
        else None
    )
    handle.shutdown()
    print(json.dumps({"rounds": results, "background_cpu_per_call": background}))


def overhead(processes: int, rounds: int, calls: int) -> None:
    print(
        f"Per-call overhead: {processes} process(es) x {rounds} rounds; a round is {calls} bare "
        f"and {calls} instrumented calls back to back in the same process"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("plain", "stream", "chunks"):
            if mode == "chunks":
                print(f"  chunks: one streamed call of {LONG_STREAM_CHUNKS} chunks, per chunk:")
            rounds_out: list[dict[str, float]] = []
            background: list[float] = []
            # A long stream is one call of 500 chunks: fewer of them make as long a round.
            mode_calls = max(2, calls // 10) if mode == "chunks" else calls
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
                        str(mode_calls),
                        "--db",
                        os.path.join(tmp, f"{mode}-{i}.duckdb"),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                result = json.loads(out.stdout.strip().splitlines()[-1])
                rounds_out += result["rounds"]
                if result["background_cpu_per_call"] is not None:
                    background.append(result["background_cpu_per_call"])
            bare = statistics.median(r["bare"] for r in rounds_out)
            ours = statistics.median(r["ours"] for r in rounds_out)
            ratios = [r["ours"] / r["bare"] for r in rounds_out]
            floors = [r["floor"] / r["bare"] for r in rounds_out]
            per = LONG_STREAM_CHUNKS if mode == "chunks" else 1
            unit = "chunk" if mode == "chunks" else "call"
            print(
                f"  {mode:6} wall-clock per {unit}, median: bare SDK {bare / per * 1e6:7.2f} µs, "
                f"instrumented {ours / per * 1e6:7.2f} µs"
            )
            print(
                f"  {mode:6} overhead ratio (ours / bare, per round): median "
                f"{statistics.median(ratios):.3f}  min {min(ratios):.3f}  max {max(ratios):.3f}"
            )
            print(
                f"  {mode:6} floor: an OTel SDK span alone, same attributes, no processor "
                f"(ratio to bare, per round): median {statistics.median(floors):.3f}  "
                f"min {min(floors):.3f}  max {max(floors):.3f}"
            )
            if background:
                cpu = statistics.median(background)
                print(
                    f"  {mode:6} export + ingest threads: {cpu * 1e6:.1f} µs CPU per call; "
                    f"ratio if that CPU were spent on the caller's thread too: "
                    f"{(ours + cpu) / bare:.3f}"
                )


def _bench_spans(spans_count: int, content_size: int = 2000) -> list:  # type: ignore[type-arg]
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from finetuner_otel._json import dumps

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    # Spans as our instrumentor makes them: its scope, and content in its own JSON encoding.
    tracer = provider.get_tracer("finetuner_otel.instrumentation")
    content = "x" * content_size
    for i in range(spans_count):
        with tracer.start_as_current_span("chat gpt-4o-mini") as span:
            span.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "finetuner.dataset": "bench",
                    "gen_ai.input.messages": dumps(
                        [{"role": "user", "parts": [{"type": "text", "content": f"{i} {content}"}]}]
                    ),
                    "gen_ai.output.messages": dumps(
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
    return list(memory.get_finished_spans())


# DuckDB's own bulk load of spool files: read_json with the ingest's columns, DuckDB's defaults.
_BULK_LOAD = (
    "INSERT OR IGNORE INTO recorded_calls ({names}) SELECT {names} FROM read_json(?, "
    "format='newline_delimited', columns={{{columns}}})"
)


def _bulk_load_sql() -> str:
    from finetuner_otel.store._schema import INGEST_COLUMNS

    columns = ", ".join(f"'{k}': '{v}'" for k, v in INGEST_COLUMNS.items())
    return _BULK_LOAD.format(names=", ".join(INGEST_COLUMNS), columns=columns)


def _exporter_run(spans: list, tmp: str, label: str, path: str) -> float:  # type: ignore[type-arg]
    """Spans/s from the first span handed over to every row queryable in a store, by
    ``export()`` of 512 (a BatchSpanProcessor's batches: opentelemetry-instrument's path) or
    ``add()`` of each (DuckDBSpanProcessor: instrument()'s). The exporter, its ingest helper and
    the store are made first, by one span flushed before the clock starts: once per app."""
    import duckdb

    from finetuner_otel import Store
    from finetuner_otel.exporters import DuckDBSpanExporter
    from finetuner_otel.store._schema import migrate

    db = Path(tmp) / f"{label}.duckdb"
    con = duckdb.connect(str(db))  # an existing store, as the baseline's
    migrate(con, db)
    con.close()
    exporter = DuckDBSpanExporter(db)  # default settings, as instrument() uses them
    exporter.export(spans[:1])
    exporter.force_flush()
    start = time.perf_counter()
    if path == "export":
        for i in range(1, len(spans), 512):  # BatchSpanProcessor's default batch size
            exporter.export(spans[i : i + 512])
    else:
        for span in spans[1:]:
            exporter.add(span)
    exporter.force_flush()
    count = Store(db).sql("SELECT count(*) FROM calls").rows[0][0]
    rate = (len(spans) - 1) / (time.perf_counter() - start)
    exporter.shutdown()
    assert count == len(spans), count
    return rate


def exporter_throughput(spans_count: int, repeats: int) -> None:
    """Spans/s from the exporter's hands to rows queryable in the store (``_exporter_run``: both
    paths), against DuckDB's own bulk load of the same rows (already encoded and spooled, so
    only read_json + INSERT + commit are timed, on a plain connection with DuckDB's default
    settings). All three in each repeat, one after another."""
    import duckdb

    from finetuner_otel.exporters._spans import span_to_line
    from finetuner_otel.store._files import pending_files, write_spool
    from finetuner_otel.store._schema import migrate

    spans = _bench_spans(spans_count + 1)
    lines = [span_to_line(span) for span in spans[1:]]
    bulk_load = _bulk_load_sql()
    rates: dict[str, list[float]] = {"export": [], "add": [], "alone": []}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            for path in ("export", "add"):
                rates[path].append(_exporter_run(spans, tmp, path, path))
            spool = Path(tmp) / "baseline.spool"
            for i in range(0, len(lines), 512):
                write_spool(spool, lines[i : i + 512])
            files = [str(f) for f in pending_files(spool)]
            con = duckdb.connect(str(Path(tmp) / "baseline.duckdb"))
            migrate(con, "baseline")
            start = time.perf_counter()
            con.execute("BEGIN TRANSACTION")
            con.execute(bulk_load, [files])
            con.execute("COMMIT")
            count = con.execute("SELECT count(*) FROM calls").fetchone()[0]  # type: ignore[index]
            rates["alone"].append(spans_count / (time.perf_counter() - start))
            con.close()
            assert count == spans_count, count
    print(f"Exporter: {spans_count} spans (2 KB of messages each), {repeats} repeats, spans/s")

    def line(label: str, rates: list[float]) -> None:
        print(
            f"  {label:58}: median {statistics.median(rates):7,.0f}  "
            f"(min {min(rates):,.0f}, max {max(rates):,.0f})"
        )

    line("ours: export() of 512 -> rows queryable in the store", rates["export"])
    line("ours: add() of each (instrument()) -> rows queryable", rates["add"])
    line("DuckDB alone: bulk load of the same rows (read_json + INSERT)", rates["alone"])
    for path in ("export", "add"):
        ratios = [a / b for a, b in zip(rates[path], rates["alone"], strict=True)]
        print(
            f"  ratio ours ({path}) / DuckDB alone, per repeat: "
            f"median {statistics.median(ratios):.2f}"
        )


def dataset_export(examples: int, repeats: int) -> None:
    """Seconds to export ``examples`` examples to JSONL, ours and DuckDB's COPY, alternately."""
    import duckdb

    from finetuner_otel import Store
    from finetuner_otel.exporters._spans import span_to_line
    from finetuner_otel.store._files import write_spool

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "export.duckdb"
        store = Store(db, spool_dir=Path(tmp) / "spool")
        for start in range(0, examples, 10_000):  # made and stored in slices: less memory
            spans = _bench_spans(min(10_000, examples - start), content_size=500)
            write_spool(store.spool_dir, [span_to_line(span) for span in spans])
            store.ingest()
        ours: list[float] = []
        floor: list[float] = []
        for repeat in range(repeats):
            target = Path(tmp) / f"ours-{repeat}.jsonl"
            start_time = time.perf_counter()
            export = store.get_dataset("bench").to_jsonl(target)
            ours.append(time.perf_counter() - start_time)
            assert export.examples == examples, export.examples

            copy = Path(tmp) / f"copy-{repeat}.jsonl"
            start_time = time.perf_counter()
            con = duckdb.connect(str(db), read_only=True)
            con.execute(
                "COPY (SELECT example FROM examples WHERE dataset = 'bench' "
                f"ORDER BY started_at, id) TO '{copy}' (FORMAT JSON)"
            )
            con.close()
            floor.append(time.perf_counter() - start_time)
        size = export.stat().st_size / 1e6
    print(f"Dataset export: {examples:,} examples ({size:.0f} MB of JSONL), {repeats} repeats, s")
    print(
        f"  {'ours: get_dataset().to_jsonl(), with its snapshot':58}: median "
        f"{statistics.median(ours):6.2f}  (min {min(ours):.2f}, max {max(ours):.2f})"
    )
    print(
        f"  {'DuckDB alone: COPY (SELECT example ...) TO (FORMAT JSON)':58}: median "
        f"{statistics.median(floor):6.2f}  (min {min(floor):.2f}, max {max(floor):.2f})"
    )
    ratios = [a / b for a, b in zip(ours, floor, strict=True)]
    print(f"  ratio ours / DuckDB COPY, per repeat: median {statistics.median(ratios):.2f}")


def peak_rss_mb() -> float:
    """This process's peak resident memory. From /proc (VmHWM) where there is one: ru_maxrss
    of a child also counts the parent's memory it had between fork and exec."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def burst_child(spans_count: int, db: str | None) -> None:
    """One process: end ``spans_count`` GenAI spans in a tight loop; print peak RSS."""
    from opentelemetry.sdk.trace import TracerProvider

    import finetuner_otel

    provider = TracerProvider()
    handle = finetuner_otel.instrument(db, tracer_provider=provider) if db else None
    tracer = provider.get_tracer("burst")
    messages = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "x" * 2000}]}])
    start = time.perf_counter()
    for i in range(spans_count):
        with tracer.start_as_current_span("chat m") as span:
            span.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": "m",
                    "gen_ai.input.messages": messages,
                    "gen_ai.output.messages": '[{"role":"assistant","parts":[]}]',
                    "finetuner.dataset": f"burst {i % 2}",
                }
            )
    elapsed = time.perf_counter() - start
    stored = 0
    if handle is not None:
        handle.flush()
        stored = handle.open_store().sql("SELECT count(*) FROM calls").rows[0][0]
        handle.shutdown()
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "seconds": elapsed, "stored": stored}))


def burst_memory(spans_count: int) -> None:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, db in (("no exporter", ""), ("instrument()", os.path.join(tmp, "b.duckdb"))):
            out = subprocess.run(
                [sys.executable, str(HERE), "--burst-child", str(spans_count), "--db", db],
                capture_output=True,
                text=True,
                check=True,
            )
            results[label] = json.loads(out.stdout.strip().splitlines()[-1])
    base, ours = results["no exporter"], results["instrument()"]
    print(f"Burst: {spans_count:,} GenAI spans (2 KB each) ended in a tight loop, one process each")
    print(
        f"  peak RSS: no exporter {base['peak_rss_mb']:.0f} MB, instrument() "
        f"{ours['peak_rss_mb']:.0f} MB (ratio {ours['peak_rss_mb'] / base['peak_rss_mb']:.2f}); "
        f"{ours['stored']:,} stored, the rest dropped by the bounded span queue"
    )


def ingest_child(db: str, spool: str, mode: str) -> None:
    """One process: an exporter whose spool holds a backlog flushes it into ``db``, ingesting
    in its helper process (``mode`` process) or in this one (thread); print this process's
    peak RSS, the helper's, and the seconds it took."""
    sys.path.insert(0, str(HERE.parent))
    from peers import _child_processes

    from finetuner_otel.exporters import DuckDBSpanExporter

    exporter = DuckDBSpanExporter(db, spool_dir=spool, ingest_interval=3600, ingest=mode)
    start = time.perf_counter()
    exporter.force_flush(timeout_millis=3_600_000)
    seconds = time.perf_counter() - start
    helpers = _child_processes()
    exporter.shutdown()
    helper = max((h[0] for h in helpers), default=None)
    print(
        json.dumps({"peak_rss_mb": peak_rss_mb(), "helper_peak_rss_mb": helper, "seconds": seconds})
    )


def _child_json(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACELOOP"))},
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


STORE_CASES = ("finetuner-otel + store (thread ingest)", "finetuner-otel + store")


def store_memory(calls: int, backlog_mb: int) -> None:
    """Peak RSS after ``calls`` sync calls on the in-process transport (each case a process of
    its own, peers.py's memory run): the bare SDK, ours with the store ingesting on a
    thread of the app (FINETUNER_INGEST=thread), and ours with the store ingesting in its
    helper process (the default; the helper's own peak is given). Then a spool backlog of
    ``backlog_mb`` MB of rows flushed in both ways."""
    peers = str(HERE.with_name("peers.py"))
    with tempfile.TemporaryDirectory() as tmp:
        rss = {}
        for case in ("bare", *STORE_CASES):
            own = tempfile.mkdtemp(dir=tmp)  # a store of its own for each case
            rss[case] = _child_json(peers, "--child", case, "sync", str(calls), "0", own)
    bare = rss["bare"]["peak_rss_mb"]
    print(f"Memory: peak RSS after {calls:,} sync calls (in-process transport), MB")
    for case, result in rss.items():
        peak = result["peak_rss_mb"]
        helper = result.get("helper_peak_rss_mb")
        mine = (
            f"; its ingest helper's own peak {helper:.0f}, CPU {result['helper_cpu_seconds']:.0f} s"
            if helper is not None
            else ""
        )
        print(f"  {case:40}: {peak:5.0f}  (bare + {peak - bare:.0f}){mine}")
    backlog(backlog_mb)


def backlog(megabytes: int) -> None:
    """A spool of ``megabytes`` MB of rows (encode_row lines, 3 KB each, in files of 512)
    ingested by one process: its peak RSS, against a process that only imports the same."""
    import shutil

    from finetuner_otel.exporters._spans import span_to_line
    from finetuner_otel.store.spool import write_spool

    spans = _bench_spans(512)
    with tempfile.TemporaryDirectory() as tmp:
        if shutil.disk_usage(tmp).free < 4 * megabytes << 20:
            print(f"Backlog: skipped, under {4 * megabytes} MB free in {tmp}")
            return
        spool, written, batch = Path(tmp) / "b.duckdb.spool", 0, 0
        template = [span_to_line(span) for span in spans]
        while written < megabytes << 20:
            # Distinct rows: the id's time part (its last 16 hex digits) made unique per batch.
            lines = [_unique(line, batch, i) for i, line in enumerate(template)]
            write_spool(spool, lines)
            written += sum(len(line) + 1 for line in lines)
            batch += 1
        results = {}
        for mode in ("thread", "process"):
            copy = Path(tmp) / f"{mode}.duckdb.spool"
            shutil.copytree(spool, copy)
            db = str(Path(tmp) / f"{mode}.duckdb")
            results[mode] = _child_json(str(HERE), "--ingest-child", db, str(copy), mode)
            shutil.rmtree(copy, ignore_errors=True)
        idle = _child_json("-c", _IMPORT_ONLY)
    print(
        f"Backlog: {written / 1e6:,.0f} MB of spool ({batch * len(template):,} rows) flushed by "
        f"an exporter (a process that only imports the store: {idle['peak_rss_mb']:.0f} MB)"
    )
    for mode, result in results.items():
        helper = result["helper_peak_rss_mb"]
        print(
            f"  FINETUNER_INGEST={mode:8}: {result['seconds']:.0f} s; the app's peak RSS "
            f"{result['peak_rss_mb']:.0f} MB"
            + (f", its ingest helper's {helper:.0f} MB" if helper is not None else "")
        )


def _cpu_seconds(pid: int | str = "self", *, but: int | None = None) -> float:
    """Seconds on a CPU of every thread of a process so far (``but`` that one), to the
    nanosecond (the scheduler's own count; /proc's user and system times are in 10 ms ticks).
    Linux only: OSError elsewhere."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        if but is not None and int(task) == but:
            continue
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as fh:
                total += int(fh.read().split()[0])
        except FileNotFoundError:  # a thread that ended meanwhile
            pass
    return total / 1e9


def _paced(call: Any, rate: float, seconds: float) -> int:
    """``call()`` at ``rate`` a second for ``seconds`` (each waits for the next, as a service's
    calls do); how many were made."""
    calls, end, due = 0, time.monotonic() + seconds, time.monotonic()
    while time.monotonic() < end:
        call()
        calls += 1
        due += 1 / rate
        time.sleep(max(0.0, due - time.monotonic()))
    return calls


def steady_child(rate: str, seconds: str, db: str) -> None:
    """One process: bare calls paced at ``rate`` a second for ``seconds`` (a call after a
    pause costs more than one of a tight loop: caches gone cold), then the same through
    ``instrument()`` with its default settings; the CPU of each, and of the ingest helper."""
    import finetuner_otel

    client = _client()
    request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}

    def call() -> None:
        client.chat.completions.create(**request)

    for _ in range(50):
        call()
    start = _cpu_seconds()
    bare_calls = _paced(call, float(rate), float(seconds))
    bare = _cpu_seconds() - start
    handle = finetuner_otel.instrument(db)
    call()
    assert handle.flush()  # the helper started and the store made before the count
    helper = handle.processor.exporter.ingest_pid
    assert helper is not None
    app0, helper0 = _cpu_seconds(), _cpu_seconds(helper)
    calls = _paced(call, float(rate), float(seconds))
    app, helper_cpu = _cpu_seconds() - app0, _cpu_seconds(helper) - helper0
    handle.shutdown()
    print(json.dumps({"calls": calls, "bare": bare / bare_calls, "app": app, "helper": helper_cpu}))


def steady_traffic(rates: tuple[float, ...], seconds: float) -> None:
    """The ingest helper's CPU under paced traffic, where each ingest takes in a few rows and
    its fixed cost (DuckDB attaching, checking and checkpointing the store) is most of it;
    each rate a process of its own. ``make bench-instr`` counts the cost of a row, with
    ingests only at flushes, so it leaves this out."""
    print(
        f"Steady traffic: calls paced for {seconds:.0f} s, instrument() with its defaults "
        f"(an ingest every FINETUNER_INGEST_INTERVAL, 1 s); CPU per call, against a bare "
        f"call's paced the same way"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for rate in rates:
            db = str(Path(tmp) / f"steady-{rate}.duckdb")
            r = _child_json(str(HERE), "--steady-child", str(rate), str(seconds), db)
            calls, bare = r["calls"], r["bare"]
            print(
                f"  {rate:4g} calls/s ({calls} calls): a bare call {bare * 1e3:.2f} ms; the app "
                f"{r['app'] / calls * 1e3:.2f} ms a call ({r['app'] / calls / bare:.2f} of a "
                f"bare call); its ingest helper {r['helper'] / calls * 1e3:.2f} ms a call "
                f"({r['helper'] / calls / bare:.1f} of a bare call, "
                f"{r['helper'] / seconds * 100:.1f}% of a core)"
            )


_IMPORT_ONLY = (
    "import json, finetuner_otel.store.spool\n"
    "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
    "print(json.dumps({'peak_rss_mb': int(hwm) / 1024}))"
)


def _unique(line: str, batch: int, index: int) -> str:
    """The line with an id of its own (the id is the first field: 64 hex digits)."""
    head = '{"id":"'
    assert line.startswith(head)
    key = f"{batch:08x}{index:08x}"
    start = len(head) + 64 - len(key)
    return line[:start] + key + line[start + len(key) :]


def serve_child(db: str, port_file: str) -> None:
    """One process: ``finetuner serve`` until stdin closes; then print its peak RSS."""
    from finetuner_otel._serve import OTLPReceiver

    with OTLPReceiver(db, port=0) as receiver:
        Path(port_file).write_text(receiver.url)
        sys.stdin.read()
        print(json.dumps({"peak_rss_mb": peak_rss_mb(), "accepted": receiver.accepted}))


def serve_throughput(spans_count: int, repeats: int) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from finetuner_otel import Store
    from finetuner_otel.exporters import DuckDBSpanExporter

    spans = _bench_spans(spans_count)
    served: list[float] = []
    local: list[float] = []
    rss: list[float] = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            db, port_file = os.path.join(tmp, "served.duckdb"), os.path.join(tmp, "url")
            child = subprocess.Popen(
                [sys.executable, str(HERE), "--serve-child", db, port_file],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            while not os.path.exists(port_file) or not Path(port_file).read_text():
                time.sleep(0.05)
            exporter = OTLPSpanExporter(endpoint=Path(port_file).read_text())
            start = time.perf_counter()
            for i in range(0, len(spans), 512):
                assert exporter.export(spans[i : i + 512]).name == "SUCCESS"
            while True:  # until queryable in the store
                try:
                    store = Store(db)
                    store.ingest(wait=5)
                    if store.sql("SELECT count(*) FROM calls").rows[0][0] == spans_count:
                        break
                except Exception:
                    time.sleep(0.05)
            served.append(spans_count / (time.perf_counter() - start))
            exporter.shutdown()
            out, _ = child.communicate("", timeout=60)
            rss.append(json.loads(out.strip().splitlines()[-1])["peak_rss_mb"])

            in_process = DuckDBSpanExporter(os.path.join(tmp, "local.duckdb"))
            start = time.perf_counter()
            for i in range(0, len(spans), 512):
                in_process.export(spans[i : i + 512])
            in_process.force_flush()
            local.append(spans_count / (time.perf_counter() - start))
            in_process.shutdown()
    print(f"finetuner serve: {spans_count:,} spans (2 KB each) per repeat, {repeats} repeats")
    print(
        f"  through the SDK's OTLP/HTTP exporter and finetuner serve: median "
        f"{statistics.median(served):,.0f} spans/s (min {min(served):,.0f}, "
        f"max {max(served):,.0f}); receiver peak RSS {max(rss):.0f} MB"
    )
    print(
        f"  the in-process exporter, same spans: median {statistics.median(local):,.0f} spans/s; "
        f"ratio served / in-process {statistics.median(served) / statistics.median(local):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, for a smoke run")
    parser.add_argument(
        "--rounds-of", choices=["plain", "stream", "chunks"], help=argparse.SUPPRESS
    )
    parser.add_argument("--rounds", type=int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=20, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--only-export", action="store_true", help="the dataset export only")
    parser.add_argument("--only-scale", action="store_true", help="burst memory and serve only")
    parser.add_argument("--burst-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--ingest-child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument(
        "--only-memory", action="store_true", help="peak RSS with the store, and a backlog"
    )
    parser.add_argument("--backlog-mb", type=int, default=1024, help="the backlog's size (1024)")
    parser.add_argument("--only-backlog", action="store_true", help="the spool backlog only")
    parser.add_argument("--only-throughput", action="store_true", help="the exporter only")
    parser.add_argument(
        "--only-steady", action="store_true", help="the ingest helper's CPU under paced calls"
    )
    parser.add_argument("--steady-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ingest_child:
        ingest_child(*args.ingest_child)
        return
    if args.steady_child:
        steady_child(*args.steady_child)
        return
    if args.only_steady:
        steady_traffic((0.5, 4.0) if args.quick else (0.5, 4.0, 32.0), 10 if args.quick else 30)
        return
    if args.only_throughput:
        exporter_throughput(5000 if args.quick else 20000, repeats=2 if args.quick else 5)
        return
    if args.only_backlog:
        backlog(64 if args.quick else args.backlog_mb)
        return
    if args.only_memory:
        store_memory(5_000 if args.quick else 100_000, 64 if args.quick else args.backlog_mb)
        return
    if args.burst_child:
        burst_child(args.burst_child, args.db or None)
        return
    if args.serve_child:
        serve_child(*args.serve_child)
        return
    if args.only_scale:
        burst_memory(20_000 if args.quick else 100_000)
        serve_throughput(5_000 if args.quick else 20_000, repeats=1 if args.quick else 3)
        return
    if args.only_export:
        dataset_export(10_000 if args.quick else 100_000, repeats=2 if args.quick else 3)
        return
    if args.rounds_of:
        run_rounds(args.rounds_of, args.rounds, args.calls, args.db)
        return
    print(f"Python {sys.version.split()[0]} on {os.cpu_count()} CPUs")
    if args.quick:
        overhead(processes=1, rounds=20, calls=20)
        exporter_throughput(5000, repeats=2)
        steady_traffic((0.5, 4.0), 10)
        burst_memory(20_000)
        serve_throughput(5_000, repeats=1)
        dataset_export(10_000, repeats=2)
    else:
        overhead(processes=3, rounds=100, calls=20)
        exporter_throughput(20000, repeats=5)
        steady_traffic((0.5, 4.0, 32.0), 30)
        burst_memory(100_000)
        serve_throughput(20_000, repeats=3)
        dataset_export(100_000, repeats=3)


if __name__ == "__main__":
    main()
