"""Faults: an unwritable spool, an ingest killed mid-transaction. Nothing exported is lost
(within the memory bound), the app never sees an exception, and drops are counted."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from finetuner_otel import Store
from finetuner_otel.cli import main
from finetuner_otel.exporters import DuckDBSpanExporter
from finetuner_otel.exporters._spans import span_to_line
from finetuner_otel.store._files import pending_files, write_spool
from finetuner_otel.store._schema import INGEST_COLUMNS
from tests._small_disk import small_disk


def _spans(n: int, start: int = 0, pad: int = 0) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("faults")
    for i in range(start, start + n):
        question = f"q{i}" + "x" * pad
        with tracer.start_as_current_span("chat m") as span:
            span.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": "m",
                    "finetuner.dataset": "faults",
                    "gen_ai.input.messages": json.dumps(
                        [{"role": "user", "parts": [{"type": "text", "content": question}]}]
                    ),
                    "gen_ai.output.messages": json.dumps(
                        [
                            {
                                "role": "assistant",
                                "finish_reason": "stop",
                                "parts": [{"type": "text", "content": f"a{i}"}],
                            }
                        ]
                    ),
                }
            )
    return list(memory.get_finished_spans())


def _answers(db: Path) -> list[str]:
    rows = Store(db).sql("SELECT completion->>'content' FROM calls ORDER BY started_at").rows
    return [r[0] for r in rows]


def test_an_unwritable_spool_holds_spans_then_writes_them(tmp_path: Path) -> None:
    db, spool = tmp_path / "s.duckdb", tmp_path / "s.duckdb.spool"  # the default spool
    spool.write_text("a file where the spool directory should be")  # fails even for root
    exporter = DuckDBSpanExporter(db, spool_dir=spool, max_held_spans=5)
    spans = _spans(7)
    exporter.export(spans[:3])
    exporter.export(spans[3:])  # 7 > 5: the 2 oldest are dropped, counted
    assert (exporter.spans_held, exporter.spans_dropped) == (5, 2)
    assert exporter.force_flush() is False  # not durable yet, and says so
    spool.unlink()  # the disk is back
    assert exporter.force_flush() is True
    assert exporter.spans_held == 0
    assert _answers(db) == [f"a{i}" for i in range(2, 7)]
    (count,) = spool.glob("dropped-*.json")  # the count for `finetuner doctor`, owner-only
    assert stat.S_IMODE(count.stat().st_mode) == 0o600
    exporter.shutdown()
    out = io.StringIO()
    main(["--db", str(db), "--json", "doctor"], out=out, err=io.StringIO())
    assert json.loads(out.getvalue())["spans_dropped"] == 2


def test_an_ingest_killed_mid_transaction_loses_nothing_on_rerun(tmp_path: Path) -> None:
    db, spool = tmp_path / "s.duckdb", tmp_path / "s.duckdb.spool"
    spans = _spans(3000)
    for i in range(0, len(spans), 10):  # 300 spool files
        write_spool(spool, [span_to_line(s) for s in spans[i : i + 10]])
    code = (
        f"import sys; from finetuner_otel import Store; Store({str(db)!r}).ingest(); print('done')"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL)
    wal = Path(f"{db}.wal")
    deadline = time.monotonic() + 60
    while process.poll() is None and not wal.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    if process.poll() is None:  # in its transaction: the write-ahead log exists
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    Store(db).ingest()  # the re-run
    Store(db).ingest()  # and again: idempotent
    answers = _answers(db)
    assert sorted(answers) == sorted(f"a{i}" for i in range(3000))
    assert pending_files(spool) == []


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["[", '{"a":', '[{"role": 1}]', '[{"parts": "x"}]', "\ud800", "null"]),
    st.lists(st.text(max_size=8), max_size=3).map(tuple),
)
_keys = st.sampled_from(
    [
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.definitions",
        "gen_ai.request.model",
        "gen_ai.response.finish_reasons",
        "gen_ai.usage.input_tokens",
        "finetuner.dataset",
        "finetuner.request.options",
        "error.type",
        "anything.else",
    ]
)


@settings(max_examples=300, deadline=None)
@given(attributes=st.dictionaries(_keys, _values, max_size=8))
def test_malformed_attributes_still_make_one_well_formed_row(attributes: dict) -> None:  # type: ignore[type-arg]
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("fuzz").start_as_current_span("chat") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        for key, value in attributes.items():
            if value is not None:
                span.set_attribute(key, value)
    [finished] = memory.get_finished_spans()
    row = json.loads(span_to_line(finished))
    assert list(row) == list(INGEST_COLUMNS)
    assert isinstance(row["trainable"], bool) and isinstance(row["dataset"], str)


def test_an_ingest_out_of_memory_keeps_the_spool_and_quarantines_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finetuner_otel import StoreError
    from finetuner_otel.store import _connection

    db, spool = tmp_path / "s.duckdb", tmp_path / "s.duckdb.spool"
    write_spool(spool, [span_to_line(s) for s in _spans(20)])
    monkeypatch.setitem(_connection._CONFIG, "memory_limit", "16MB")  # too little to read JSON
    with pytest.raises(StoreError, match="stopped by the machine, not the data"):
        Store(db).ingest()
    assert len(pending_files(spool)) == 1
    assert not (spool / "quarantine").exists()  # good calls are never set aside
    monkeypatch.delitem(_connection._CONFIG, "memory_limit")
    Store(db).ingest()
    assert sorted(_answers(db)) == sorted(f"a{i}" for i in range(20))


def test_reads_go_on_while_the_spool_cannot_be_taken_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A machine error during a read's ingest (no memory here, a full disk alike) leaves the
    spool for later and answers from what is stored, with a warning, instead of failing."""
    from finetuner_otel.store import _connection

    db, spool = tmp_path / "s.duckdb", tmp_path / "s.duckdb.spool"
    write_spool(spool, [span_to_line(s) for s in _spans(5)])
    Store(db).ingest()
    write_spool(spool, [span_to_line(s) for s in _spans(20)])
    monkeypatch.setitem(_connection._CONFIG, "memory_limit", "16MB")  # too little to read JSON
    assert Store(db).sql("SELECT count(*) FROM calls")[0][0] == 5
    assert "without its spool" in caplog.text
    assert len(pending_files(spool)) == 1
    monkeypatch.delitem(_connection._CONFIG, "memory_limit")
    assert Store(db).sql("SELECT count(*) FROM calls")[0][0] == 25


def test_a_full_disk_gives_back_every_span_that_freed_space_allows(tmp_path: Path) -> None:
    # On main: the 350 held spans (about 1 MB) went back as one file, which 756 KB of freed
    # space could not take: 0 written, and all 350 lost at exit.
    with small_disk(tmp_path / "disk", "4m") as disk:
        spool, db = disk.root / "spool", tmp_path / "s.duckdb"
        exporter = DuckDBSpanExporter(db, spool_dir=spool, ingest_interval=3600)
        spans = _spans(350, pad=2500)
        disk.fill()
        for i in range(0, 350, 50):
            assert exporter.export(spans[i : i + 50]) is SpanExportResult.FAILURE
        assert (exporter.spans_held, exporter.spans_dropped) == (350, 0)
        assert exporter.force_flush() is False  # nothing is durable, and it says so
        disk.free(756 * 1024)
        assert exporter.force_flush() is False  # some are still held
        stored = len(_answers(db))
        # Files of at most 64 KB: all that 756 KB takes is written and ingested, but for the
        # last file that did not fit and the filesystem's own blocks (4 KB a file).
        line_size = len(span_to_line(spans[0])) + 1
        assert stored * line_size >= (756 - 64 - 64) * 1024
        assert stored + exporter.spans_held == 350
        exporter.shutdown()  # the ingest freed the spool's space again: the rest goes in
        assert sorted(_answers(db)) == sorted(f"a{i}" for i in range(350))
        assert exporter.spans_dropped == 0


def test_spans_still_held_at_exit_are_counted_lost(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "1m") as disk:
        spool, db = disk.root / "spool", tmp_path / "s.duckdb"
        exporter = DuckDBSpanExporter(db, spool_dir=spool, ingest_interval=3600)
        disk.fill()
        exporter.export(_spans(20, pad=1000))
        assert exporter.force_flush() is False
        exporter.shutdown()
        assert exporter.spans_dropped == 20 and exporter.spans_held == 0


def test_spans_added_on_a_full_disk_are_held_then_all_stored(tmp_path: Path) -> None:
    """The queue-less path (``add()``, what instrument() uses) on a full disk: each full chunk
    that cannot be written is held (counted, nothing raised into the app's thread), and every
    span is stored once space comes back."""
    with small_disk(tmp_path / "disk", "1m") as disk:
        spool, db = disk.root / "spool", tmp_path / "s.duckdb"
        exporter = DuckDBSpanExporter(db, spool_dir=spool, ingest_interval=3600)
        spans = _spans(300, pad=2500)  # about 0.8 MB: three chunks and some
        disk.fill()
        for span in spans:
            exporter.add(span)  # never raises
        assert exporter.spans_held > 0 and exporter.spans_dropped == 0
        assert exporter.force_flush() is False  # not durable, and it says so
        disk.free(1 << 20)
        assert exporter.force_flush() is True
        assert exporter.spans_held == 0
        exporter.shutdown()
    assert sorted(_answers(db)) == sorted(f"a{i}" for i in range(300))
