"""The store: schema and migrations, ingest, reading, splitting and exporting."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import duckdb
import pytest

import finetuner_otel
from finetuner_otel import Store
from finetuner_otel.store._schema import INGEST_COLUMNS, MIGRATIONS, MIGRATIONS_TABLE
from finetuner_otel.testing import OpenAIServer, Reply

from .conftest import rows


def _capture_n(handle, server: OpenAIServer, n: int, dataset: str = "ds") -> None:
    client = server.client()
    for i in range(n):
        server.enqueue(Reply(f"answer {i}"))
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": f"question {i}"}], dataset_name=dataset
        )
    assert handle.flush()


def test_schema_from_blank(capture, db: Path, server: OpenAIServer) -> None:
    _capture_n(capture, server, 1)
    con = duckdb.connect(str(db), read_only=True)
    try:
        columns = [
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'calls' "
                "ORDER BY ordinal_position"
            ).fetchall()
        ]
        applied = [r[0] for r in con.execute(f"SELECT name FROM {MIGRATIONS_TABLE}").fetchall()]
        views = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_type = 'VIEW'"
            ).fetchall()
        }
    finally:
        con.close()
    assert columns == [*INGEST_COLUMNS, "ingested_at"]
    assert applied == [name for name, _ in MIGRATIONS]
    assert {"examples", "datasets"} <= views


def test_store_written_by_a_newer_version_is_refused_untouched(db: Path) -> None:
    Store(db).ingest()  # nothing pending: no file is made
    assert not db.exists()
    db.parent.mkdir(parents=True)
    con = duckdb.connect(str(db))
    con.execute(
        f"CREATE TABLE {MIGRATIONS_TABLE} (name VARCHAR PRIMARY KEY, applied_at "
        "TIMESTAMPTZ DEFAULT current_timestamp)"
    )
    con.execute(f"INSERT INTO {MIGRATIONS_TABLE} (name) VALUES ('0001_calls'), ('9999_future')")
    con.close()
    before = db.read_bytes()
    with pytest.raises(finetuner_otel.SchemaError, match="newer finetuner-otel"):
        Store(db).list_datasets()
    assert db.read_bytes() == before


def test_list_get_split_and_export(capture, server: OpenAIServer, tmp_path: Path) -> None:
    _capture_n(capture, server, 40, "search_classifier")
    _capture_n(capture, server, 3, "other")
    store = finetuner_otel.open_store()
    summaries = store.list_datasets()
    assert [(d.name, d.examples, d.calls) for d in summaries] == [
        ("other", 3, 3),
        ("search_classifier", 40, 40),
    ]

    ds = store.get_dataset("search_classifier")
    assert len(ds) == 40
    train, val = ds.split(0.8, seed=0)
    train_ids, val_ids = {e.id for e in train}, {e.id for e in val}
    assert not train_ids & val_ids
    assert train_ids | val_ids == {e.id for e in ds}
    assert 20 <= len(train) <= 39  # close to 80% of 40; membership is by hash
    again, _ = store.get_dataset("search_classifier").split(0.8, seed=0)
    assert [e.id for e in again] == [e.id for e in train]
    other_seed, _ = ds.split(0.8, seed=1)
    assert [e.id for e in other_seed] != [e.id for e in train]

    path = train.to_jsonl(tmp_path / "out" / "train.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(train)
    first = json.loads(lines[0])
    assert first == {
        "messages": [
            {"role": "user", "content": train[0].messages[0]["content"]},
            {"role": "assistant", "content": train[0].completion["content"]},
        ]
    }


def test_split_is_stable_as_the_dataset_grows(capture, server: OpenAIServer) -> None:
    _capture_n(capture, server, 20)
    _, val_before = finetuner_otel.open_store().get_dataset("ds").split(0.7, seed=3)
    _capture_n(capture, server, 20)
    train_after, _ = finetuner_otel.open_store().get_dataset("ds").split(0.7, seed=3)
    assert not {e.id for e in val_before} & {e.id for e in train_after}


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, "0.8", True])
def test_split_rejects_bad_fractions(bad) -> None:
    ds = finetuner_otel.Dataset("x", [])
    with pytest.raises(finetuner_otel.ConfigurationError, match="split"):
        ds.split(bad)


def test_unknown_dataset_names_the_known_ones(capture, server: OpenAIServer) -> None:
    _capture_n(capture, server, 1, "search_classifier")
    with pytest.raises(
        finetuner_otel.DatasetNotFoundError, match="Did you mean 'search_classifier'"
    ):
        finetuner_otel.open_store().get_dataset("search_clasifier")


def test_sql_is_plain_duckdb_and_read_only(capture, server: OpenAIServer) -> None:
    _capture_n(capture, server, 3, "a")
    store = finetuner_otel.open_store()
    assert store.sql("SELECT dataset, count(*) FROM calls GROUP BY 1") == [("a", 3)]
    result = store.sql(
        "SELECT json_extract_string(example, '$.messages[1].content') AS answer "
        "FROM examples WHERE dataset = ? ORDER BY started_at",
        ["a"],
    )
    assert result.columns == ["answer"]
    assert [r[0] for r in result] == ["answer 0", "answer 1", "answer 2"]
    with pytest.raises(finetuner_otel.StoreError, match="read-only"):
        store.sql("DELETE FROM calls")
    with pytest.raises(finetuner_otel.StoreError, match="SQL error"):
        store.sql("SELEC nonsense")
    assert len(store.sql("SELECT * FROM calls")) == 3  # nothing was lost


def test_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "nothing.duckdb")
    assert store.list_datasets() == []
    with pytest.raises(finetuner_otel.StoreError, match="no store at"):
        store.sql("SELECT 1")


def test_corrupt_spool_file_is_quarantined_and_the_rest_ingested(
    capture, server: OpenAIServer, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = db.with_name(db.name + ".spool")
    spool.mkdir(parents=True, exist_ok=True)
    (spool / "00000000000000000001-1-1-0.jsonl").write_text('{"id": "broken", "trace')
    _capture_n(capture, server, 2)
    assert len(rows(capture)) == 2
    quarantined = list((spool / "quarantine").glob("*.jsonl"))
    assert [p.name for p in quarantined] == ["00000000000000000001-1-1-0.jsonl"]
    assert (
        "not valid JSON"
        in (spool / "quarantine" / "00000000000000000001-1-1-0.reason.txt").read_text()
    )
    assert "could not be ingested" in caplog.text


def test_ingest_is_idempotent(capture, server: OpenAIServer, db: Path) -> None:
    _capture_n(capture, server, 2)
    spool = db.with_name(db.name + ".spool")
    before = rows(capture)
    # A crash between commit and delete leaves the spool file behind: re-ingest must not duplicate.
    from finetuner_otel.store._spool import write_spool

    con = duckdb.connect(str(db), read_only=True)
    raw = con.execute("SELECT * FROM calls").fetchall()
    cols = [d[0] for d in con.description]
    con.close()
    replay = []
    for values in raw:
        row = dict(zip(cols, values, strict=True))
        row.pop("ingested_at")
        for key in ("started_at", "ended_at"):
            row[key] = row[key].isoformat()
        for key, kind in INGEST_COLUMNS.items():
            if kind == "JSON" and isinstance(row[key], str):
                row[key] = json.loads(row[key])
        replay.append(row)
    write_spool(spool, replay)
    assert Store(db).ingest() == 1
    assert len(rows(capture)) == len(before) == 2


def test_store_and_spool_are_private(capture, server: OpenAIServer, db: Path) -> None:
    _capture_n(capture, server, 1)
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(db.with_name(db.name + ".spool")).st_mode) == 0o700


def test_no_credentials_are_stored(capture, server: OpenAIServer, db: Path) -> None:
    client = server.client(api_key="sk-super-secret-123", default_headers={"X-Token": "tok-456"})
    client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"Authorization": "Bearer sk-other-789"},
    )
    assert capture.flush()
    data = db.read_bytes()
    for secret in (b"sk-super-secret-123", b"tok-456", b"sk-other-789"):
        assert secret not in data
