"""The read model the CLI and the UI share (finetuner_otel.store.reads), on a real store made by
an import: fast, no server, no browser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetuner_otel import ConfigurationError, Store
from finetuner_otel.store import reads


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """Dataset "a" with 7 imported calls (q0..q6), dataset "b" with 1."""
    for name, count in (("a", 7), ("b", 1)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text(
            "".join(
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": f"q{i} {name}"},
                            {"role": "assistant", "content": f"answer {i}"},
                        ]
                    }
                )
                + "\n"
                for i in range(count)
            )
        )
        store = Store(tmp_path / "s.duckdb")
        store.import_jsonl(path, name, model="m")
    return store


def test_pages_of_calls_by_keyset(store: Store) -> None:
    first = reads.list_calls(store, reads.CallFilters("a"), size=3)
    assert first.total == 7 and len(first.rows) == 3 and first.newer is None
    second = reads.list_calls(store, first.filters, older_than=first.older, size=3)
    third = reads.list_calls(store, first.filters, older_than=second.older, size=3)
    assert third.older is None and len(third.rows) == 1
    ids = [r["id"] for page in (first, second, third) for r in page.rows]
    assert len(set(ids)) == 7
    started = [r["started_at"] for page in (first, second, third) for r in page.rows]
    assert started == sorted(started, reverse=True)  # newest first
    back = reads.list_calls(store, first.filters, newer_than=second.newer, size=3)
    assert [r["id"] for r in back.rows] == [r["id"] for r in first.rows]
    row = first.rows[0]
    assert row["completion"] == row["answer"] and row["question"].endswith(" a")
    assert {row["dataset"] for page in (first, second, third) for row in page.rows} == {"a"}


def test_filters_narrow_and_refuse_unknown_values(store: Store) -> None:
    everything = reads.list_calls(store)
    assert everything.total == 8
    assert reads.list_calls(store, reads.CallFilters(q="Q3 A")).total == 1  # any case
    call_id = everything.rows[0]["id"]
    store.reject(call_id, "dup")
    rejected = reads.list_calls(store, reads.CallFilters(feedback="rejected"))
    assert [r["id"] for r in rejected.rows] == [call_id] and rejected.rows[0]["verdict"] == "reject"
    assert reads.list_calls(store, reads.CallFilters(feedback="unreviewed")).total == 7
    with pytest.raises(ConfigurationError, match="use one of ok, error, incomplete"):
        reads.CallFilters(status="maybe")
    with pytest.raises(ConfigurationError, match="go back to the first page"):
        reads.list_calls(store, older_than="garbage")
    query = reads.CallFilters.from_query({"q": " x ", "feedback": "accepted"}, dataset="a")
    assert query == reads.CallFilters("a", q="x", feedback="accepted")
    assert query.query() == {"q": "x", "feedback": "accepted"}


def test_one_call_with_its_history(store: Store) -> None:
    [call_id] = reads.call_ids_starting(store, reads.list_calls(store).rows[0]["id"][:20])
    store.accept(call_id, "fine")
    store.correct(call_id, "better answer")
    store.prefer(call_id, "best answer", note="pair")
    detail = reads.call_detail(store, call_id)
    assert detail is not None
    assert detail["verdict"] == "accept" and detail["correction"]["content"] == "better answer"
    assert [(h["kind"], h["completion"]) for h in detail["history"]] == [
        ("accept", None),
        ("correct", "better answer"),
    ]
    assert [(p["preferred"], p["note"]) for p in detail["preferences"]] == [("best answer", "pair")]
    assert reads.call_detail(store, "no-such-call") is None
    assert len(reads.call_ids_starting(store, "")) == 2  # every id starts with "": not unique


def test_dataset_summaries_and_facets(store: Store) -> None:
    call_id = reads.list_calls(store, reads.CallFilters("a")).rows[0]["id"]
    store.reject(call_id)
    summaries = {d["name"]: d for d in reads.dataset_summaries(store)}
    assert (summaries["a"]["calls"], summaries["a"]["examples"]) == (7, 6)
    assert (summaries["a"]["rejected"], summaries["b"]["rejected"]) == (1, 0)
    assert reads.dataset_exists(store, "b") and not reads.dataset_exists(store, "c")
    assert reads.dataset_facets(store, "a") == {"models": ["m"], "prompt_versions": []}
    assert reads.finetune_jobs(store) == [] and reads.eval_runs(store) == []
    assert reads.finetune_lineage(store) == [] and reads.job_provider(store, "ftjob-x") is None
