"""The store: schema and migrations, ingest, reading, splitting and exporting."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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

        def columns(table: str) -> list[str]:
            return [
                r[0]
                for r in con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                    "ORDER BY ordinal_position",
                    [table],
                ).fetchall()
            ]

        recorded, calls = columns("recorded_calls"), columns("calls")
        applied = [r[0] for r in con.execute(f"SELECT name FROM {MIGRATIONS_TABLE}").fetchall()]
        views = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_type = 'VIEW'"
            ).fetchall()
        }
    finally:
        con.close()
    assert recorded == [*INGEST_COLUMNS, "ingested_at"]
    # The calls view adds the OpenAI fine-tuning format, derived from the recorded content.
    assert calls == [
        *recorded,
        "messages",
        "completion",
        "tools",
        "prompt_name",
        "prompt_version",
        "prompt_variables",
        "source",
        "rationale",
        "answer",
    ]
    assert applied == [name for name, _ in MIGRATIONS]
    assert {"calls", "examples", "datasets", "call_feedback", "preference_pairs"} <= views


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
        store.sql("DELETE FROM recorded_calls")
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
    reason = (spool / "quarantine" / "00000000000000000001-1-1-0.reason.txt").read_text()
    assert reason.startswith("line 1: ") and "Malformed JSON" in reason
    assert "could not be ingested" in caplog.text


def test_bad_lines_are_quarantined_and_good_lines_of_the_same_file_ingested(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from finetuner_otel.exporters._spans import span_to_line
    from finetuner_otel.store._files import write_spool

    spans = _foreign_spans(
        [
            {"gen_ai.operation.name": "chat", "gen_ai.input.messages": _user_text(f"q{i}")}
            for i in range(2)
        ]
    )
    good = [span_to_line(span) for span in spans]
    spool = db.with_name(db.name + ".spool")
    write_spool(spool, [good[0], '{"id": "torn', good[1].replace('"2026', '"not a time', 1)])
    assert Store(db).ingest() == 1
    assert [r[0] for r in Store(db).sql("SELECT id FROM calls")] == [_row_id(spans[0])]
    (kept,) = (spool / "quarantine").glob("*.jsonl")
    assert kept.read_text().splitlines() == [
        '{"id": "torn',
        good[1].replace('"2026', '"not a time', 1),
    ]
    reasons = kept.with_suffix(".reason.txt").read_text().splitlines()
    assert reasons[0].startswith("line 2: ") and reasons[1].startswith("line 3: ")
    assert "2 line(s) of spool file" in caplog.text


def test_ingest_is_idempotent(capture, server: OpenAIServer, db: Path) -> None:
    _capture_n(capture, server, 2)
    spool = db.with_name(db.name + ".spool")
    before = rows(capture)
    # A crash between commit and delete leaves the spool file behind: re-ingest must not duplicate.
    from finetuner_otel._json import dumps
    from finetuner_otel.store._files import write_spool

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
        replay.append(dumps(row))
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
    client.responses.create(model="m", input="hi", extra_headers={"api-key": "az-key-000"})
    client.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "raw"}], extra_query={"key": "q-key-111"}
    )
    assert len(rows(capture)) == 3
    written = [db.read_bytes()]
    written += [f.read_bytes() for f in db.parent.rglob("*") if f.is_file() and f != db]
    secrets = (b"sk-super-secret-123", b"tok-456", b"sk-other-789", b"az-key-000", b"q-key-111")
    for secret in secrets:
        assert all(secret not in data for data in written)


def _foreign_spans(attribute_sets: list[dict], error: str | None = None) -> list:
    """Finished spans as another GenAI instrumentation would make them (no finetuner code)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Status, StatusCode

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("someone.elses.instrumentation")
    for attributes in attribute_sets:
        with tracer.start_as_current_span("chat m", record_exception=False) as span:
            span.set_attributes(attributes)
            if error:
                span.set_status(Status(StatusCode.ERROR, error))
    provider.shutdown()
    return list(memory.get_finished_spans())


def _user_text(text: str) -> str:
    return json.dumps([{"role": "user", "parts": [{"type": "text", "content": text}]}])


def test_spool_lines_hold_exactly_the_ingest_columns() -> None:
    from finetuner_otel.exporters._spans import span_to_line

    (span,) = _foreign_spans(
        [{"gen_ai.operation.name": "chat", "gen_ai.input.messages": _user_text("hi")}]
    )
    assert list(json.loads(span_to_line(span))) == list(INGEST_COLUMNS)


def test_foreign_spans_with_awkward_content_are_stored_faithfully(db: Path) -> None:
    """Spans from other instrumentations: pretty-printed JSON, text that needs escaping,
    invalid JSON, NaN, lone surrogates. Each is stored; none costs the others their rows."""
    from finetuner_otel.exporters import DuckDBSpanExporter

    tricky = 'quote " backslash \\ newline \n tab \t unicode é 漢 \u2028 nul \x00'
    good_output = json.dumps(
        [{"role": "assistant", "parts": [{"type": "text", "content": tricky}]}], indent=2
    )
    base = {"gen_ai.operation.name": "chat", "gen_ai.request.model": 'm"odel'}
    spans = _foreign_spans(
        [
            {
                **base,
                "finetuner.dataset": 'ds "quoted" é',
                "gen_ai.input.messages": json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": tricky}]}], indent=2
                ),
                "gen_ai.output.messages": good_output,
            },
            {**base, "gen_ai.input.messages": "{not json", "gen_ai.output.messages": good_output},
            {**base, "gen_ai.input.messages": '[{"role": "user", "x": NaN}]'},
            {**base, "gen_ai.input.messages": _user_text("lone \ud800 surrogate")},
        ]
    )
    spans += _foreign_spans(
        [{**base, "gen_ai.input.messages": _user_text("x")}], error="bad\nthing"
    )
    exporter = DuckDBSpanExporter(db, ingest_interval=3600)
    assert exporter.export(spans).name == "SUCCESS"
    exporter.shutdown()
    stored = Store(db)
    got = {
        r[0]: r[1:]
        for r in stored.sql(
            "SELECT id, dataset, request_model, messages, completion, status, error_message, "
            "trainable, untrainable_reason, input_messages FROM calls"
        )
    }
    assert len(got) == 5 and not list(stored.spool_dir.glob("quarantine/*"))
    first = got[_row_id(spans[0])]
    assert first[0] == 'ds "quoted" é' and first[1] == 'm"odel'
    assert json.loads(first[2]) == [{"role": "user", "content": tricky}]
    assert json.loads(first[3]) == {"role": "assistant", "content": tricky}
    assert first[6] is True
    for bad in spans[1:3]:
        row = got[_row_id(bad)]
        assert row[8] is None and row[6] is False
        assert row[7] == "no input messages were recorded"
    surrogate = json.loads(got[_row_id(spans[3])][8])
    assert surrogate[0]["parts"][0]["content"] == "lone \ufffd surrogate"
    failed = got[_row_id(spans[4])]
    assert failed[4:8] == ("error", "bad\nthing", False, "the call failed")


def _row_id(span) -> str:  # type: ignore[no-untyped-def]
    ctx = span.get_span_context()
    return f"{ctx.trace_id:032x}{ctx.span_id:016x}{span.start_time:016x}"


def test_apps_that_seed_random_do_not_lose_calls(capture, server: OpenAIServer) -> None:
    """OTel draws span ids from the global random module: an app (or a test run) that seeds it
    makes the same ids again, and those calls must not be taken for repeats of each other."""
    import random

    client = server.client()
    for i in range(3):
        random.seed(0)
        server.enqueue(Reply(f"run {i}"))
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])
    stored = rows(capture)
    assert len({(r["trace_id"], r["span_id"]) for r in stored}) == 1  # the ids repeat...
    assert [r["completion"]["content"] for r in stored] == ["run 0", "run 1", "run 2"]


def _labelled(labels: list[str]) -> list[finetuner_otel.Example]:
    return [
        finetuner_otel.Example(
            id=f"call-{i}",
            dataset="x",
            messages=[{"role": "user", "content": f"q{i}"}],
            completion={"role": "assistant", "content": label},
        )
        for i, label in enumerate(labels)
    ]


@settings(max_examples=200, deadline=None)
@given(
    labels=st.lists(st.sampled_from(["spam", "ham", "eggs"]), max_size=60),
    extra=st.lists(st.sampled_from(["spam", "ham", "eggs"]), max_size=20),
    fraction=st.floats(min_value=0.05, max_value=0.95),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_a_stratified_split_is_proportional_per_group_and_stable_as_calls_arrive(
    labels: list[str], extra: list[str], fraction: float, seed: int
) -> None:
    examples = _labelled(labels + extra)
    before = finetuner_otel.Dataset("x", examples[: len(labels)])
    after = finetuner_otel.Dataset("x", examples)
    train, val = after.split(fraction, seed, stratify_by=lambda e: e.completion["content"])
    assert sorted(e.id for e in [*train, *val]) == sorted(e.id for e in examples)
    for label in {*labels, *extra}:
        n = sum(e.completion["content"] == label for e in examples)
        in_train = sum(e.completion["content"] == label for e in train)
        assert abs(in_train - fraction * n) < 1
    # the same by field name: the completion message
    by_field, _ = after.split(fraction, seed, stratify_by="completion")
    assert [e.id for e in by_field] == [e.id for e in train]
    # later calls never move an earlier example to the other side
    train_before, _ = before.split(fraction, seed, stratify_by="completion")
    assert {e.id for e in train_before} == {e.id for e in train} & {e.id for e in before}


def test_stratify_by_must_name_a_field_or_be_a_function() -> None:
    ds = finetuner_otel.Dataset("x", _labelled(["a"]))
    with pytest.raises(finetuner_otel.ConfigurationError, match="no field of an Example"):
        ds.split(0.5, stratify_by="label")
    with pytest.raises(finetuner_otel.ConfigurationError, match="a field name or a function"):
        ds.split(0.5, stratify_by=3)  # type: ignore[arg-type]


def test_a_failing_migration_leaves_the_store_as_it_was(
    capture, server: OpenAIServer, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _capture_n(capture, server, 2)
    capture.shutdown()
    from finetuner_otel.store import _schema

    broken = [
        *MIGRATIONS,
        ("9998_fine", "CREATE TABLE fine (x INT)"),
        ("9999_broken", "CREATE TABLE oops (x INT); SELECT nonsense FROM nowhere"),
    ]
    monkeypatch.setattr(_schema, "MIGRATIONS", broken)
    con = duckdb.connect(str(db))
    try:
        with pytest.raises(duckdb.Error):
            _schema.migrate(con, db)
        names = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        tables = {r[0] for r in names}
        applied = [r[0] for r in con.execute(f"SELECT name FROM {MIGRATIONS_TABLE}").fetchall()]
    finally:
        con.close()
    assert "fine" not in tables and "oops" not in tables  # all of it, or none
    assert applied == [name for name, _ in MIGRATIONS]


def test_exports_never_write_through_a_symlink(
    capture, server: OpenAIServer, tmp_path: Path
) -> None:
    _capture_n(capture, server, 2)
    outside = tmp_path / "outside" / "secret.txt"
    outside.parent.mkdir()
    outside.write_text("keep me")
    target = tmp_path / "out" / "train.jsonl"
    target.parent.mkdir()
    target.symlink_to(outside)
    finetuner_otel.open_store().get_dataset("ds").to_jsonl(target)
    assert not target.is_symlink() and len(target.read_text().splitlines()) == 2
    assert outside.read_text() == "keep me"
