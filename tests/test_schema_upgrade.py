"""Stores made by every earlier schema version upgrade in place and read as new ones do.

An old store is built as the old code built it: the first k migrations exactly as they were
released (tests/_schema_history.py, views and macros included), and rows in every table those
migrations made. Opened by today's Store, it gets today's tables and views; each view then gives
the same rows as in a store made today with the same data, and, for the newest old store, the
same rows its own old views gave before the upgrade.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finetuner_otel import SchemaError, Store
from finetuner_otel._cot import split_rationale
from finetuner_otel.store._schema import (
    INGEST_COLUMNS,
    MIGRATIONS,
    MIGRATIONS_TABLE,
    VIEWS_TABLE,
    migrate,
    views_sha256,
)

from ._schema_history import MIGRATIONS as OLD_MIGRATIONS

VIEWS = ("calls", "examples", "datasets", "call_feedback", "preference_pairs", "finetune_lineage")
_AT = "2026-11-30 12:00:00+00"


def _parts(role: str, *parts: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"role": role, "parts": list(parts), **extra}


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "content": text}


def _call(n: int, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(INGEST_COLUMNS)
    row.update(
        id=f"call{n}",
        trace_id=f"{n:032x}",
        span_id=f"{n:016x}",
        dataset="ds",
        operation="chat",
        provider="openai",
        request_model="gpt-4o-mini",
        started_at=f"2026-11-30 10:00:0{n}+00",
        ended_at=f"2026-11-30 10:00:0{n}+00",
        duration_ms=12.5,
        status="ok",
        trainable=True,
        finish_reasons=["stop"],
        input_tokens=10,
        output_tokens=3,
        input_messages=[_parts("user", _text(f"question {n}"))],
        output_messages=[_parts("assistant", _text(f"answer {n}"), finish_reason="stop")],
        attributes={},
        scope_name="finetuner_otel",
    )
    row.update(values)
    return row


# Calls that exercise every branch of the views: system instructions and tools, chain of
# thought, tool calls and results, images, refusals, weights, prompts, imports, sources, errors.
CALLS = [
    _call(
        1,
        system_instructions=[_text("Be brief.")],
        tool_definitions=[{"type": "function", "name": "lookup", "parameters": {"type": "object"}}],
        output_messages=[
            _parts(
                "assistant",
                _text("<reasoning>\n it is six\n</reasoning>\n<answer> 6\t</answer>\n"),
                finish_reason="stop",
            )
        ],
        attributes={
            "finetuner.prompt.name": "p",
            "finetuner.prompt.version": "v1",
            "finetuner.prompt.variables": json.dumps({"x": "1"}),
        },
        request_options={"temperature": 0},
    ),
    _call(
        2,
        input_messages=[
            _parts("user", _text("weather?")),
            _parts(
                "assistant",
                {"type": "tool_call", "id": "t1", "name": "lookup", "arguments": {"q": "x"}},
            ),
            _parts("tool", {"type": "tool_call_response", "id": "t1", "response": "sunny"}),
            _parts(
                "user",
                _text("and this?"),
                {"type": "uri", "modality": "image", "uri": "https://example.com/a.png"},
            ),
        ],
        output_messages=[
            _parts(
                "assistant",
                {"type": "tool_call", "id": "t2", "name": "lookup", "arguments": '{"q": "y"}'},
                finish_reason="tool_calls",
            )
        ],
        finish_reasons=["tool_calls"],
    ),
    _call(
        3,
        output_messages=[
            _parts("assistant", {"type": "refusal", "content": "no"}, finish_reason="stop")
        ],
        attributes={"finetuner.source": "synthetic"},
    ),
    _call(
        4,
        dataset="other",
        scope_name="finetuner_otel.import",
        input_messages=[
            _parts("user", _text("hi")),
            _parts("assistant", _text("hello"), weight=0),
            _parts("user", _text("again")),
        ],
    ),
    _call(
        5,
        status="error",
        error_type="RateLimitError",
        error_message="slow down",
        trainable=False,
        untrainable_reason="error",
        output_messages=None,
        finish_reasons=None,
        output_tokens=None,
    ),
    _call(6, trainable=False, untrainable_reason="truncated", finish_reasons=["length"]),
]

# Rows of the later tables, by the migration that made the table.
LATER_ROWS = {
    "0002_feedback": [
        "INSERT INTO feedback VALUES ('call1', 'accept', NULL, 'good', '2026-11-30 11:00:00+00')",
        "INSERT INTO feedback VALUES ('call6', 'correct', "
        '\'{"role": "assistant", "content": "fixed"}\', NULL, \'2026-11-30 11:00:01+00\')',
        "INSERT INTO feedback VALUES ('call3', 'reject', NULL, NULL, '2026-11-30 11:00:02+00')",
        "INSERT INTO feedback VALUES ('call5', 'correct', "
        '\'{"role": "assistant", "content": "n/a"}\', NULL, \'2026-11-30 11:00:03+00\')',
    ],
    "0003_preferences": [
        'INSERT INTO preferences VALUES (\'call2\', \'{"role": "assistant", "content": '
        '"better"}\', \'{"role": "assistant", "content": "worse"}\', \'pair\', '
        "'2026-11-30 11:01:00+00')",
    ],
    "0004_snapshots": [
        f"INSERT INTO snapshots VALUES ('{'a' * 64}', 'ds', 'openai_chat', 2, '/x', '{_AT}')",
        f"INSERT INTO snapshot_calls VALUES ('{'a' * 64}', 0, 'call1'), ('{'a' * 64}', 1, 'call2')",
    ],
    "0006_finetune": [
        f"INSERT INTO finetune_uploads VALUES ('openai', 'file-1', 'ds', '{'a' * 64}', "
        f"'openai_chat', 2, '{_AT}')",
        "INSERT INTO finetune_jobs (provider, job_id, base_model, method, training_file, "
        "hyperparameters, status, provider_status, updated_at) VALUES ('openai', 'job-1', "
        f"'gpt-4o-mini', 'supervised', 'file-1', '{{\"n_epochs\": 3}}', 'running', "
        f"'running', '{_AT}')",
    ],
}


def _insert_calls(con: duckdb.DuckDBPyConnection) -> None:
    columns = [*INGEST_COLUMNS, "ingested_at"]
    marks = ", ".join("?" for _ in columns)
    for call in CALLS:
        values = [
            json.dumps(call[c])
            if INGEST_COLUMNS.get(c) == "JSON" and call[c] is not None
            else call.get(c, _AT)
            for c in columns
        ]
        con.execute(f"INSERT INTO recorded_calls ({', '.join(columns)}) VALUES ({marks})", values)


def _fill(con: duckdb.DuckDBPyConnection, migrations: list[str]) -> None:
    _insert_calls(con)
    for name, statements in LATER_ROWS.items():
        if name in migrations:
            for statement in statements:
                con.execute(statement)


def _old_store(path: Path, k: int) -> None:
    """A store as the code of migration k made it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    try:
        con.execute(
            f"CREATE TABLE {MIGRATIONS_TABLE} (name VARCHAR PRIMARY KEY, applied_at "
            "TIMESTAMPTZ NOT NULL DEFAULT current_timestamp)"
        )
        for name, sql in OLD_MIGRATIONS[:k]:
            con.execute(sql)
            con.execute(f"INSERT INTO {MIGRATIONS_TABLE} (name) VALUES (?)", [name])
        _fill(con, [name for name, _ in OLD_MIGRATIONS[:k]])
    finally:
        con.close()


def _new_store(path: Path, k: int) -> None:
    """A store made today, holding the same rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    try:
        migrate(con, path)
        _fill(con, [name for name, _ in OLD_MIGRATIONS[:k]])
    finally:
        con.close()


def _read_views(path: Path) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        found = {}
        for view in VIEWS:
            exists = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [view]
            ).fetchone()
            if exists and exists[0]:
                cursor = con.execute(f"SELECT * FROM {view} ORDER BY ALL")
                found[view] = ([d[0] for d in cursor.description or ()], cursor.fetchall())
        return found
    finally:
        con.close()


def test_the_history_is_the_migration_names_of_today() -> None:
    assert [name for name, _ in OLD_MIGRATIONS] == [name for name, _ in MIGRATIONS]


@pytest.mark.parametrize("k", range(1, len(OLD_MIGRATIONS) + 1))
def test_a_store_from_every_earlier_version_reads_as_a_new_one(tmp_path: Path, k: int) -> None:
    old, new = tmp_path / "old" / "f.duckdb", tmp_path / "new" / "f.duckdb"
    _old_store(old, k)
    _new_store(new, k)
    store = Store(old)
    assert not store.schema_status().up_to_date
    store.list_datasets()  # the first read upgrades it
    status = store.schema_status()
    assert status.up_to_date and status.views_sha256 == views_sha256()
    assert list(status.applied) == [name for name, _ in MIGRATIONS]
    upgraded, fresh = _read_views(old), _read_views(new)
    assert set(upgraded) == set(VIEWS)
    assert upgraded == fresh
    assert len(upgraded["calls"][1]) == len(CALLS)


def test_the_views_give_what_the_old_views_gave(tmp_path: Path) -> None:
    """The newest old store: each of its views, before and after the upgrade, row for row."""
    db = tmp_path / "f.duckdb"
    _old_store(db, len(OLD_MIGRATIONS))
    before = _read_views(db)
    Store(db).list_datasets()
    after = _read_views(db)
    assert after == before
    calls = dict(zip(after["calls"][0], after["calls"][1][0], strict=True))
    assert (calls["rationale"], calls["answer"]) == ("it is six", "6")


def test_changed_views_are_applied_again(tmp_path: Path) -> None:
    """A store whose views are not this version's (another version applied its own, or one
    was dropped) gets them back at the next read."""
    db = tmp_path / "f.duckdb"
    _new_store(db, len(OLD_MIGRATIONS))
    con = duckdb.connect(str(db))
    con.execute("DROP VIEW examples")
    con.execute(f"UPDATE {VIEWS_TABLE} SET sha256 = 'from another version'")
    con.close()
    store = Store(db)
    assert store.schema_status().views_sha256 == "from another version"
    assert store.sql("SELECT count(*) FROM examples").rows == [(4,)]
    assert store.schema_status().up_to_date


def test_a_store_edited_by_hand_is_refused_untouched(tmp_path: Path) -> None:
    db = tmp_path / "f.duckdb"
    _old_store(db, 1)
    con = duckdb.connect(str(db))
    con.execute(f"INSERT INTO {MIGRATIONS_TABLE} (name) VALUES ('0003_preferences')")
    con.close()
    before = db.read_bytes()
    with pytest.raises(SchemaError, match="out of order"):
        Store(db).list_datasets()
    assert db.read_bytes() == before


def test_the_store_status_names_a_newer_versions_migrations(tmp_path: Path) -> None:
    db = tmp_path / "f.duckdb"
    _new_store(db, 1)
    con = duckdb.connect(str(db))
    con.execute(f"INSERT INTO {MIGRATIONS_TABLE} (name) VALUES ('9999_future')")
    con.close()
    status = Store(db).schema_status()
    assert status.unknown == ("9999_future",) and not status.up_to_date
    assert Store(tmp_path / "none.duckdb").schema_status().applied == ()


_PIECES = [
    "<reasoning>",
    "</reasoning>",
    "<answer>",
    "</answer>",
    " ",
    "\n",
    "\t",
    "\r",
    "x",
    "y z",
]


@pytest.fixture(scope="module")
def views() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(":memory:")
    migrate(con, ":memory:")
    yield con
    con.close()


@settings(max_examples=200, deadline=None)
@given(pieces=st.lists(st.sampled_from(_PIECES), max_size=12))
def test_the_sql_split_of_chain_of_thought_is_the_python_one(
    views: duckdb.DuckDBPyConnection, pieces: list[str]
) -> None:
    """views.sql's cot_split() is made from _cot.PATTERN: SQL and Python split a completion
    alike (an empty reasoning is NULL in SQL, '' in Python)."""
    text = "".join(pieces)
    reasoning, answer = split_rationale(text)
    assert views.execute("SELECT cot_split(?)", [text]).fetchone() == (
        {"rationale": reasoning or None, "answer": answer},
    )
