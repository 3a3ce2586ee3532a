"""Feedback: accept, reject, correct. Each changes exactly what is exported, and is plain SQL."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

import finetuner_otel
from finetuner_otel import Store
from finetuner_otel.store._schema import MIGRATIONS, MIGRATIONS_TABLE
from finetuner_otel.testing import OpenAIServer, Reply

from ._schema_history import MIGRATIONS as RELEASED_MIGRATIONS
from .conftest import rows


def _ask(server: OpenAIServer, answers: list[str], finish: str | None = None) -> None:
    client = server.client()
    for i, answer in enumerate(answers):
        server.enqueue(Reply(answer, finish_reason=finish))
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": f"q{i}"}], dataset_name="fb"
        )


def _exported(store: Store, tmp_path: Path) -> list[str]:
    path = store.get_dataset("fb").to_jsonl(tmp_path / "out.jsonl")
    return [json.loads(line)["messages"][-1]["content"] for line in path.read_text().splitlines()]


def test_each_kind_of_feedback_changes_exactly_the_export(
    capture, server: OpenAIServer, tmp_path: Path
) -> None:
    _ask(server, ["good", "bad", "wrong"])
    ids = [r["id"] for r in rows(capture)]
    store = capture.open_store()
    assert _exported(store, tmp_path) == ["good", "bad", "wrong"]

    store.reject(ids[1], note="off topic")
    assert _exported(store, tmp_path) == ["good", "wrong"]
    store.correct(ids[2], "right")
    assert _exported(store, tmp_path) == ["good", "right"]
    store.accept(ids[0])
    assert _exported(store, tmp_path) == ["good", "right"]
    store.accept(ids[1])  # the latest verdict counts: accepted again
    assert _exported(store, tmp_path) == ["good", "bad", "right"]
    store.correct(ids[2], {"role": "assistant", "content": "more right"})
    assert _exported(store, tmp_path) == ["good", "bad", "more right"]

    # All of it is plain SQL, and the call as recorded is untouched.
    verdicts = store.sql("SELECT call_id, verdict, correction IS NOT NULL FROM call_feedback")
    assert sorted(verdicts.rows) == sorted(
        [(ids[0], "accept", False), (ids[1], "accept", False), (ids[2], None, True)]
    )
    [[original]] = store.sql("SELECT completion->>'content' FROM calls WHERE id = ?", [ids[2]])
    assert original == "wrong"
    assert store.list_datasets()[0].examples == 3


def test_a_correction_makes_a_cut_off_answer_trainable(
    capture, server: OpenAIServer, tmp_path: Path
) -> None:
    _ask(server, ["cut o"], finish="length")
    [row] = rows(capture)
    assert not row["trainable"]
    store = capture.open_store()
    assert len(store.get_dataset("fb")) == 0
    store.correct(row["id"], "cut off no more")
    assert _exported(store, tmp_path) == ["cut off no more"]


def test_bad_feedback_is_refused_and_changes_nothing(capture, server: OpenAIServer) -> None:
    _ask(server, ["fine"])
    store = capture.open_store()
    with pytest.raises(finetuner_otel.CallNotFoundError, match="no call with id 'nope'"):
        store.reject("nope")
    with pytest.raises(finetuner_otel.ConfigurationError, match="assistant message"):
        store.correct(rows(capture)[0]["id"], {"role": "user", "content": "x"})
    assert store.sql("SELECT count(*) FROM feedback").rows == [(0,)]
    assert len(store.get_dataset("fb")) == 1


def test_a_store_from_the_first_schema_is_upgraded_in_place(db: Path, server: OpenAIServer) -> None:
    db.parent.mkdir(parents=True)
    con = duckdb.connect(str(db))
    con.execute(
        f"CREATE TABLE {MIGRATIONS_TABLE} (name VARCHAR PRIMARY KEY, applied_at "
        "TIMESTAMPTZ NOT NULL DEFAULT current_timestamp)"
    )
    name, sql = RELEASED_MIGRATIONS[0]  # as the first version ran it, views included
    con.execute(sql)
    con.execute(f"INSERT INTO {MIGRATIONS_TABLE} (name) VALUES (?)", [name])
    con.close()
    handle = finetuner_otel.instrument(db)
    try:
        _ask(server, ["kept"])
        [row] = rows(handle)
        handle.open_store().reject(row["id"])
        assert len(handle.open_store().get_dataset("fb")) == 0
    finally:
        handle.shutdown()
    applied = Store(db).sql(f"SELECT name FROM {MIGRATIONS_TABLE} ORDER BY name").rows
    assert [r[0] for r in applied] == [n for n, _ in MIGRATIONS]


def test_preference_pairs_export_in_openai_dpo_format(
    capture, server: OpenAIServer, tmp_path: Path
) -> None:
    _ask(server, ["meh", "fine"])
    ids = [r["id"] for r in rows(capture)]
    store = capture.open_store()
    store.prefer(ids[0], "great")  # over what the model answered
    store.prefer(ids[1], {"role": "assistant", "content": "best"}, "worst", note="A/B test")
    path = store.export_preferences("fb", tmp_path / "dpo.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records == [
        {
            "input": {"messages": [{"role": "user", "content": "q0"}]},
            "preferred_output": [{"role": "assistant", "content": "great"}],
            "non_preferred_output": [{"role": "assistant", "content": "meh"}],
        },
        {
            "input": {"messages": [{"role": "user", "content": "q1"}]},
            "preferred_output": [{"role": "assistant", "content": "best"}],
            "non_preferred_output": [{"role": "assistant", "content": "worst"}],
        },
    ]
    assert store.sql("SELECT note FROM preference_pairs WHERE note IS NOT NULL").rows == [
        ("A/B test",)
    ]
    with pytest.raises(finetuner_otel.ConfigurationError, match="prefer"):
        store.prefer(ids[0], 42)  # type: ignore[arg-type]
    with pytest.raises(finetuner_otel.CallNotFoundError):
        store.prefer("nope", "x")
    assert store.sql("SELECT count(*) FROM preferences").rows == [(2,)]
