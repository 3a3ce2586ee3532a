"""Spool ingest never wedges and never leaks: a bad line or file is set aside with its reason
and the rest goes in; a full disk keeps the spool whole for later; every file it makes (the
DuckDB write-ahead log included) is its owner's alone."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import threading
from pathlib import Path

import pytest

from finetuner_otel import Store, StoreError
from finetuner_otel.store._connection import connect
from finetuner_otel.store._files import pending_files, write_spool
from finetuner_otel.store._rows import CallRecord, encode_row
from tests._small_disk import small_disk

_T0 = 1_780_000_000 * 10**9


def _line(n: int, **fields: object) -> str:
    """A row as the encoder writes it, then with ``fields`` set over it."""
    record = CallRecord(
        trace_id=n + 1,
        span_id=n + 1,
        start_ns=_T0 + n,
        end_ns=_T0 + n + 1000,
        dataset="ingest",
        operation="chat",
        input_messages=[{"role": "user", "parts": [{"type": "text", "content": f"q{n}"}]}],
        output_messages=[{"role": "assistant", "parts": [{"type": "text", "content": f"a{n}"}]}],
    )
    row = json.loads(encode_row(record))
    row.update(fields)
    return json.dumps(row)


def _id(line: str) -> str:
    return str(json.loads(line)["id"])


def _ids(db: Path) -> set[str]:
    return {r[0] for r in Store(db).sql("SELECT id FROM calls").rows}


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_constraint_breaking_line_beside_an_unreadable_one_does_not_wedge_ingest(
    tmp_path: Path,
) -> None:
    # On main: ingest raised a raw duckdb.ConstraintException, the file stayed first in the
    # spool, and every later ingest (and list_datasets()) raised it again: nothing more got in.
    db, spool = tmp_path / "s.duckdb", tmp_path / "s.duckdb.spool"
    no_trace = _line(0, trace_id=None)  # reads, but breaks NOT NULL
    write_spool(spool, [no_trace, '{"id": "torn'])
    later = [_line(i) for i in range(1, 4)]
    write_spool(spool, later)
    assert Store(db).ingest() == 1
    assert _ids(db) == {_id(x) for x in later}
    assert [d.name for d in Store(db).list_datasets()] == ["ingest"]
    (kept,) = (spool / "quarantine").glob("*.jsonl")
    assert kept.read_text().splitlines() == [no_trace, '{"id": "torn']
    reasons = kept.with_name(kept.name.replace(".jsonl", ".reason.txt")).read_text()
    assert reasons.splitlines()[0].startswith("line 1: Constraint Error: NOT NULL")
    assert reasons.splitlines()[1].startswith("line 2: Malformed JSON")
    # And the next requests go in as usual.
    write_spool(spool, [_line(9)])
    assert Store(db).list_datasets()[0].calls == 4
    assert pending_files(spool) == []


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"trainable": "maybe"}, "maybe"),  # a conversion DuckDB refuses
        ({"started_at": "yesterday"}, "yesterday"),
        ({"dataset": None}, "NOT NULL"),
        ({"duration_ms": "slow"}, "slow"),
        ({"finish_reasons": {"not": "a list"}}, ""),
        ({"input_tokens": 10**30}, ""),
    ],
)
def test_each_kind_of_bad_line_goes_aside_alone_with_its_reason(
    tmp_path: Path, fields: dict[str, object], expected: str
) -> None:
    db, spool = tmp_path / "s.duckdb", tmp_path / "s.duckdb.spool"
    good = [_line(i) for i in range(40)]
    bad = _line(99, **fields)
    write_spool(spool, [*good[:17], bad, *good[17:]])
    assert Store(db).ingest() == 1
    assert _ids(db) == {_id(x) for x in good}
    (kept,) = (spool / "quarantine").glob("*.jsonl")
    assert kept.read_text().splitlines() == [bad]
    (reason,) = kept.with_name(kept.name.replace(".jsonl", ".reason.txt")).read_text().splitlines()
    assert reason.startswith("line 18: ") and expected in reason


def test_invalid_utf8_and_non_object_lines_are_set_aside(tmp_path: Path) -> None:
    db, spool = tmp_path / "s.duckdb", tmp_path / "s.duckdb.spool"
    spool.mkdir()
    good = [_line(i) for i in range(3)]
    raw = b"\n".join([good[0].encode(), b"\xff\xfe{", b"[1, 2]", good[1].encode(), b"  ", b"7"])
    (spool / "00000000000000000001-1-1-0.jsonl").write_bytes(raw + b"\n" + good[2].encode())
    assert Store(db).ingest() == 1
    assert _ids(db) == {_id(x) for x in good}
    reasons = (spool / "quarantine" / "00000000000000000001-1-1-0.reason.txt").read_text()
    assert [r.split(":")[0] for r in reasons.splitlines()] == ["line 2", "line 3", "line 6"]


def test_a_full_disk_under_the_write_ahead_log_keeps_the_spool_and_sets_nothing_aside(
    tmp_path: Path,
) -> None:
    # On main: the failed COMMIT was hidden by the ROLLBACK after it failing too ("no
    # transaction is active"), so it was taken for the data's fault and the file quarantined.
    spool = tmp_path / "spool"
    with small_disk(tmp_path / "disk", "16m") as disk:
        store = Store(disk.root / "s.duckdb", spool_dir=spool)
        write_spool(spool, [_line(0)])
        store.ingest()  # the store exists, migrated
        lines = [_line(i) for i in range(1, 20)]
        write_spool(spool, lines)
        disk.fill()
        with pytest.raises(StoreError, match="stopped by the machine, not the data"):
            store.ingest()
        assert len(pending_files(spool)) == 1
        assert not (spool / "quarantine").exists()
        disk.free_all()
        assert store.ingest() == 1
        assert _ids(store.path) == {_id(x) for x in [_line(0), *lines]}


def test_a_full_disk_while_quarantining_leaves_no_copy_without_its_reason(tmp_path: Path) -> None:
    # On main: the file was moved to quarantine/, then writing its reason failed: a copy with
    # no reason, and a raw OSError out of ingest.
    with small_disk(tmp_path / "disk", "1m") as disk:
        spool = disk.root / "spool"
        store = Store(tmp_path / "s.duckdb", spool_dir=spool)
        torn = ['{"id": "torn', "not json at all"]
        write_spool(spool, torn)
        disk.fill()
        with pytest.raises(StoreError, match="stopped by the machine"):
            store.ingest()
        quarantine = spool / "quarantine"
        assert not quarantine.exists() or not list(quarantine.glob("*.jsonl"))
        assert len(pending_files(spool)) == 1
        disk.free_all()
        assert store.ingest() == 0
        (kept,) = quarantine.glob("*.jsonl")
        assert kept.read_text().splitlines() == torn
        reasons = kept.with_name(kept.name.replace(".jsonl", ".reason.txt")).read_text()
        assert [r[:7] for r in reasons.splitlines()] == ["line 1:", "line 2:"]
        assert pending_files(spool) == []


def test_the_write_ahead_log_and_every_spool_file_are_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finetuner_otel.store import _connection

    db, spool = tmp_path / "s.duckdb", tmp_path / "s.duckdb.spool"
    write_spool(spool, [_line(0)])
    Store(db).ingest()
    with connect(db, read_only=False) as con:
        con.execute("CREATE TABLE IF NOT EXISTS scratch (x INTEGER)")
        con.execute("INSERT INTO scratch VALUES (1)")
        wal = Path(f"{db}.wal")
        assert wal.exists() and _mode(wal) == 0o600  # DuckDB's own default would be 0644
        # Where DuckDB spills a large query's rows (it would make it 0755, its files 0644).
        assert _mode(Path(f"{db}.tmp")) == 0o700
    assert not Path(f"{db}.tmp").exists()  # and tidied away, as DuckDB does its own
    with connect(db, read_only=True):
        assert _mode(Path(f"{db}.tmp")) == 0o700

    # A checkpoint at each commit (DuckDB deletes the log then, and makes it anew at the next
    # one): the log is owner-only at every commit of an ingest, watched while it runs.
    monkeypatch.setitem(_connection._CONFIG, "checkpoint_threshold", "1KB")
    lines = [_line(i) for i in range(1, 65)]
    write_spool(spool, [*lines, _line(999, trainable="maybe")])  # ~14 commits to salvage
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            with contextlib.suppress(FileNotFoundError):
                seen.add(_mode(wal))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        Store(db).ingest()
    finally:
        stop.set()
        watcher.join()
    assert seen == {0o600}
    assert _ids(db) >= {_id(x) for x in lines}
    made = [p for p in spool.rglob("*")]
    assert made and all(_mode(p) == (0o700 if p.is_dir() else 0o600) for p in made), [
        (p.name, oct(_mode(p))) for p in made
    ]
    assert _mode(spool) == 0o700


def test_one_bad_file_among_many_holds_back_none_of_the_others(tmp_path: Path) -> None:
    db, spool = tmp_path / "s.duckdb", tmp_path / "s.duckdb.spool"
    good: list[str] = []
    for i in range(40):
        if i == 23:
            write_spool(spool, [_line(1000, status=None), "]["])  # nothing good in it
            continue
        lines = [_line(i * 10 + j) for j in range(3)]
        write_spool(spool, lines)
        good += lines
    assert Store(db).ingest() == 39
    assert _ids(db) == {_id(x) for x in good}
    assert len(list((spool / "quarantine").glob("*.jsonl"))) == 1
    assert pending_files(spool) == []
