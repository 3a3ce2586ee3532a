"""Spans spooled with no span queue (``DuckDBSpanProcessor``, ``DuckDBSpanExporter.add``, what
``instrument()`` sets up): a burst as fast as the CPU allows loses no call, full chunks are
written by the exporter's writer thread (the app's does no file I/O), the app never holds more
than two chunks of unwritten spans whatever turns its threads get, the last spans of a quiet
spell are written by that thread too, and an app that only captures never loads
DuckDB (its ingest helper does)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from finetuner_otel import Store
from finetuner_otel.exporters import DuckDBSpanExporter, DuckDBSpanProcessor
from finetuner_otel.exporters._duckdb import CHUNK_BYTES
from finetuner_otel.store._files import pending_files

from .conftest import REPO

_MESSAGES = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "x" * 2000}]}])
_ANSWER = json.dumps(
    [{"role": "assistant", "finish_reason": "stop", "parts": [{"type": "text", "content": "a"}]}]
)


def _burst(provider: TracerProvider, n: int, dataset: str = "burst") -> None:
    """End ``n`` GenAI spans of 2 KB in a tight loop: pure Python, no I/O to wait on."""
    tracer = provider.get_tracer("burst")
    for i in range(n):
        with tracer.start_as_current_span("chat m") as span:
            span.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": "m",
                    "gen_ai.input.messages": _MESSAGES,
                    "gen_ai.output.messages": _ANSWER,
                    "finetuner.dataset": dataset,
                    "n": i,
                }
            )


def _count(db: Path) -> int:
    return int(Store(db).sql("SELECT count(*) FROM calls").rows[0][0])


def _spooled_lines(spool: Path) -> int:
    return sum(len(f.read_bytes().splitlines()) for f in pending_files(spool))


def test_a_burst_as_fast_as_the_cpu_allows_loses_no_call(tmp_path: Path) -> None:
    # Under a BatchSpanProcessor (what instrument() used, with a queue of 16,384) the export
    # thread got too few turns beside this loop: 31,744 of these 40,000 calls were stored.
    db = tmp_path / "s.duckdb"
    processor = DuckDBSpanProcessor(DuckDBSpanExporter(db))
    provider = TracerProvider()
    provider.add_span_processor(processor)
    _burst(provider, 40_000)
    assert provider.force_flush(60_000)
    provider.shutdown()
    assert processor.exporter.spans_dropped == 0
    assert _count(db) == 40_000


def _writers(spool: Path) -> set[int]:
    """The threads that wrote the spool's files (their ident is in each file's name)."""
    return {int(f.name.split("-")[2]) for f in pending_files(spool)}


def test_full_chunks_are_written_by_the_writer_thread_not_the_apps(tmp_path: Path) -> None:
    """An app whose calls wait on the network (as real ones do) does no file I/O on its own
    thread: each full chunk wakes the exporter's writer thread, long before the interval."""
    db, spool = tmp_path / "s.duckdb", tmp_path / "spool"
    exporter = DuckDBSpanExporter(db, spool_dir=spool, ingest_interval=3600)
    provider = TracerProvider()
    provider.add_span_processor(DuckDBSpanProcessor(exporter))
    line_size = 2200  # about a line of these spans
    n = 3 * CHUNK_BYTES // line_size
    for _ in range(n):
        _burst(provider, 1)
        time.sleep(0.002)  # the call's wait for its answer: the GIL is free
    deadline = time.monotonic() + 10
    while _spooled_lines(spool) * line_size < 2 * CHUNK_BYTES and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _spooled_lines(spool) * line_size >= 2 * CHUNK_BYTES  # two chunks, no interval
    writers = _writers(spool)
    assert threading.get_ident() not in writers
    assert writers == {t.ident for t in threading.enumerate() if t.name == "finetuner-otel-spool"}
    assert not db.exists()  # nothing asked the store for anything on the app's thread
    assert exporter.force_flush()
    assert _count(db) == n and pending_files(spool) == []
    provider.shutdown()


def test_a_writer_thread_a_chunk_behind_leaves_the_writing_to_the_calling_thread(
    tmp_path: Path,
) -> None:
    """With the writer thread gone (as good as one that gets no turn of the GIL), what is not
    yet written never exceeds two chunks: the thread that ends a span writes them."""
    db, spool = tmp_path / "s.duckdb", tmp_path / "spool"
    exporter = DuckDBSpanExporter(db, spool_dir=spool, ingest_interval=3600)
    provider = TracerProvider()
    provider.add_span_processor(DuckDBSpanProcessor(exporter))
    _burst(provider, 1)  # starts the writer thread, which is then stopped
    writer = exporter._writer
    assert writer is not None
    exporter._writer_stop.set()
    exporter._chunk_ready.set()
    writer.join(5)
    line_size = 2200
    n = 5 * CHUNK_BYTES // line_size
    _burst(provider, n - 1)
    spooled = _spooled_lines(spool)
    assert spooled * line_size >= 3 * CHUNK_BYTES  # five chunks: at least three written
    assert (n - spooled) * line_size < 2 * CHUNK_BYTES * 1.1  # the rest: under two chunks
    assert _writers(spool) == {threading.get_ident()}
    assert not db.exists()
    assert exporter.force_flush()
    assert _count(db) == n and pending_files(spool) == []
    provider.shutdown()


def test_the_last_spans_of_a_quiet_spell_are_written_and_ingested_without_a_flush(
    tmp_path: Path,
) -> None:
    db = tmp_path / "s.duckdb"
    exporter = DuckDBSpanExporter(db, ingest_interval=0.2)
    provider = TracerProvider()
    provider.add_span_processor(DuckDBSpanProcessor(exporter))
    try:
        _burst(provider, 3)  # far under a chunk: only the writer thread writes them
        deadline, counted = time.monotonic() + 20, 0
        while time.monotonic() < deadline and counted < 3:
            time.sleep(0.1)
            if db.exists():
                counted = int(Store(db, read_only=True).sql("SELECT count(*) FROM calls")[0][0])
        assert counted == 3
    finally:
        provider.shutdown()


def test_a_forked_child_does_not_write_its_parents_unwritten_spans(tmp_path: Path) -> None:
    db, spool = tmp_path / "s.duckdb", tmp_path / "spool"
    exporter = DuckDBSpanExporter(db, spool_dir=spool, ingest_interval=3600, ingest="thread")
    provider = TracerProvider()
    provider.add_span_processor(DuckDBSpanProcessor(exporter))
    _burst(provider, 5, "parent")  # buffered, not written
    pid = os.fork()
    if pid == 0:  # the child: its exporter starts empty, and its flush writes nothing
        try:
            code = 0 if exporter.force_flush() and pending_files(spool) == [] else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not db.exists() or _count(db) == 0
    assert exporter.force_flush()
    assert _count(db) == 5
    provider.shutdown()


def test_a_bsp_of_the_exporter_still_works(tmp_path: Path) -> None:
    """What ``opentelemetry-instrument`` builds from ``OTEL_TRACES_EXPORTER=finetuner_duckdb``:
    the SDK's BatchSpanProcessor around the exporter, its export() each batch durable."""
    db = tmp_path / "s.duckdb"
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DuckDBSpanExporter(db)))
    _burst(provider, 50)
    assert provider.force_flush(30_000)
    provider.shutdown()
    assert _count(db) == 50


CAPTURE_ONLY = """
import json, sys
import finetuner_otel
from finetuner_otel.testing import OpenAIServer
handle = finetuner_otel.instrument(sys.argv[1])
with OpenAIServer() as server:
    client = server.client()
    for i in range(3):
        client.chat.completions.create(model='m', dataset_name='app',
            messages=[{'role': 'user', 'content': f'hello {i}'}])
assert handle.flush()
loaded = 'duckdb' in sys.modules
handle.shutdown()
print(json.dumps({'duckdb': loaded}))
"""


def test_an_app_that_only_captures_never_loads_duckdb(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINETUNER_", "OTEL_"))}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run(
        [sys.executable, "-c", CAPTURE_ONLY, str(db)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"duckdb": False}
    assert _count(db) == 3  # the helper took them in
