"""Ingest runs in the app's process under a memory limit: what does not fit it is still taken
in (a larger limit for one file, smaller transactions for several), never left in the spool;
and the rows read the fast way are the rows read_json reads."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from finetuner_otel import Store
from finetuner_otel.store._files import pending_files, write_spool
from finetuner_otel.store._rows import CallRecord, encode_row
from finetuner_otel.store._schema import migrate
from finetuner_otel.store._spool import _INSERT, _INSERT_FAST, _object_size

_T0 = 1_780_000_000 * 10**9


def _line(n: int, size: int = 3000) -> str:
    record = CallRecord(
        trace_id=n + 1,
        span_id=n + 1,
        start_ns=_T0 + n * 1_000_001,
        end_ns=_T0 + n * 1_000_001 + 2_500_000,
        dataset="memory",
        operation="chat",
        input_tokens=n,
        finish_reasons=["stop"],
        input_messages=[{"role": "user", "parts": [{"type": "text", "content": f"{n} " * size}]}],
        output_messages=[{"role": "assistant", "parts": [{"type": "text", "content": f"a{n}"}]}],
        attributes={"finetuner.purpose": "eval"} if n % 7 == 0 else {},
    )
    return encode_row(record)


@pytest.mark.slow
def test_one_spool_file_larger_than_the_memory_limit_is_still_ingested(tmp_path: Path) -> None:
    # 5,000 rows of 6 KB in one file: DuckDB needs about 200 MB for it in one transaction,
    # over the ingest's first limit (96 MB); a file cannot be split, so the limit is raised.
    db, spool = tmp_path / "m.duckdb", tmp_path / "m.duckdb.spool"
    write_spool(spool, [_line(n) for n in range(5000)])
    assert Store(db).ingest() == 1
    assert pending_files(spool) == [] and not (spool / "quarantine").exists()
    assert Store(db).sql("SELECT count(*) FROM calls").rows[0][0] == 5000


@pytest.mark.slow
def test_a_burst_of_files_goes_in_whole(tmp_path: Path) -> None:
    db, spool = tmp_path / "m.duckdb", tmp_path / "m.duckdb.spool"
    for start in range(0, 4096, 512):
        write_spool(spool, [_line(n) for n in range(start, start + 512)])
    assert Store(db).ingest() == 8
    assert Store(db).sql("SELECT count(*) FROM calls").rows[0][0] == 4096


def test_the_fast_reader_reads_what_read_json_reads(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    path = write_spool(spool, [_line(n, size=50) for n in range(300)])
    assert path is not None
    rows = []
    for statement in (_INSERT_FAST, _INSERT):
        con = duckdb.connect()
        migrate(con, "memory")
        con.execute(statement, [[str(path)], _object_size([path])])
        rows.append(
            con.execute("SELECT * EXCLUDE (ingested_at) FROM recorded_calls ORDER BY id").fetchall()
        )
        con.close()
    assert len(rows[0]) == 300 and rows[0] == rows[1]
    assert json.loads(str(rows[0][0][20]))[0]["role"] == "user"  # input_messages, as JSON
