"""The ingest helper's own DuckDB (``store._connection.keep_instance``): started once, with the
store attached for each ingest and detached after it. The store's lock is held only while it
ingests, a store made this way is its owner's alone and reads like any other, and a store the
helper could not attach (held, or broken) is attached again once it can be."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from finetuner_otel import Store
from finetuner_otel._errors import StoreError, StoreLockedError
from finetuner_otel.store import _connection
from finetuner_otel.store._files import write_spool
from finetuner_otel.store._rows import CallRecord, encode_row
from finetuner_otel.store.spool import ingest

from .conftest import REPO


@pytest.fixture
def kept(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process ingests as the helper does; its DuckDB is closed after the test."""
    monkeypatch.setattr(_connection, "_keep_instance", False)
    _connection.keep_instance()
    yield
    _connection._drop_instance()


def _spool_calls(spool: Path, n: int, start: int = 0) -> None:
    lines = [
        encode_row(
            CallRecord(
                trace_id=i + 1,
                span_id=i + 1,
                start_ns=1_700_000_000_000_000_000 + i,
                end_ns=1_700_000_000_100_000_000 + i,
                dataset="d",
                input_messages=[{"role": "user", "parts": [{"type": "text", "content": "q"}]}],
                output_messages=[
                    {"role": "assistant", "parts": [{"type": "text", "content": "a"}]}
                ],
            )
        )
        for i in range(start, start + n)
    ]
    write_spool(spool, lines)


def _holds(db: Path) -> subprocess.Popen[str]:
    """Another process holding the store open for writing until its stdin is closed."""
    code = (
        "import sys, duckdb; con = duckdb.connect(sys.argv[1]); print('held', flush=True); "
        "sys.stdin.read(); con.close()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert holder.stdout is not None
    if holder.stdout.readline() != "held\n":  # it could not open the store
        holder.kill()
        holder.communicate()
        pytest.fail("another process could not open the store for writing")
    return holder


def _release(holder: subprocess.Popen[str]) -> None:
    holder.communicate(timeout=10)
    assert holder.returncode == 0


@pytest.mark.usefixtures("kept")
def test_the_store_is_held_only_while_it_ingests(tmp_path: Path) -> None:
    db, spool = tmp_path / "s.duckdb", tmp_path / "spool"
    for round_ in range(3):
        _spool_calls(spool, 5, start=5 * round_)
        assert ingest(db, spool) == 1
        _release(_holds(db))  # between ingests another process may write the store
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600  # made by an ATTACH, owner-only all the same
    assert not (tmp_path / "s.duckdb.tmp").exists()  # the spill folder, tidied after each ingest
    [(count, datasets)] = Store(db).sql("SELECT count(*), list(DISTINCT dataset) FROM calls").rows
    assert (count, datasets) == (15, ["d"])  # its views read as any store's


@pytest.mark.usefixtures("kept")
def test_a_store_held_by_another_process_is_waited_for_then_attached(tmp_path: Path) -> None:
    db, spool = tmp_path / "s.duckdb", tmp_path / "spool"
    _spool_calls(spool, 2)
    assert ingest(db, spool) == 1
    holder = _holds(db)
    _spool_calls(spool, 2, start=2)
    with pytest.raises(StoreLockedError, match="held by another process"):
        ingest(db, spool, wait=0.3)
    _release(holder)
    assert ingest(db, spool) == 1  # the spool was kept, and goes in now
    assert Store(db).sql("SELECT count(*) FROM calls").rows == [(4,)]


@pytest.mark.usefixtures("kept")
def test_a_broken_store_is_refused_and_a_good_one_attached_after_it(tmp_path: Path) -> None:
    db, spool = tmp_path / "s.duckdb", tmp_path / "spool"
    db.write_bytes(b"not a DuckDB file " * 1000)
    _spool_calls(spool, 3)
    with pytest.raises(StoreError):
        ingest(db, spool)
    assert _connection._instance is None  # not kept after an error it may not survive
    db.unlink()
    assert ingest(db, spool) == 1  # a fresh DuckDB attaches the store made now
    assert Store(db).sql("SELECT count(*) FROM calls").rows == [(3,)]
    with duckdb.connect(str(db)) as con:  # nothing of the store is left attached
        assert con.execute("SELECT count(*) FROM recorded_calls").fetchone() == (3,)
