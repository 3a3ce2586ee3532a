"""Choosing the examples of a dataset: by model, time, SQL predicate; filter, head, sample,
dedupe."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import finetuner_otel
from finetuner_otel.testing import OpenAIServer, Reply

from .conftest import rows


def _ask(server: OpenAIServer, question: str, answer: str, model: str = "m") -> None:
    server.enqueue(Reply(answer))
    server.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], dataset_name="d"
    )


def _answers(dataset: finetuner_otel.Dataset) -> list[str]:
    return [e.completion["content"] for e in dataset]


def test_select_by_model_time_and_predicate(capture, server: OpenAIServer) -> None:
    _ask(server, "short", "a", model="small")
    _ask(server, "a much longer question with many words in it", "b", model="big")
    _ask(server, "short again", "c", model="small")
    started = [r["started_at"] for r in rows(capture)]
    store = capture.open_store()
    assert _answers(store.get_dataset("d", model="small")) == ["a", "c"]
    assert _answers(store.get_dataset("d", since=started[1])) == ["b", "c"]
    assert _answers(store.get_dataset("d", until=started[1])) == ["a"]
    long_inputs = store.get_dataset("d", where="input_tokens > ?", params=[5])
    assert _answers(long_inputs) == ["b"]
    by_content = store.get_dataset("d", where="completion->>'content' IN ('a', 'b')")
    assert _answers(by_content) == ["a", "b"]
    later = datetime.now(timezone.utc) + timedelta(days=1)
    assert len(store.get_dataset("d", since=later)) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"where": "true; DROP TABLE recorded_calls"}, "one SQL predicate"),
        ({"params": [1]}, "without a where"),
        ({"since": "yesterday"}, "since must be a datetime"),
        ({"where": "no_such_column > 1"}, "SQL error"),
    ],
)
def test_bad_selections_are_refused_clearly(
    capture, server: OpenAIServer, kwargs: dict, message: str
) -> None:
    _ask(server, "q", "a")
    store = capture.open_store()
    with pytest.raises(finetuner_otel.FinetunerError, match=message):
        len(store.get_dataset("d", **kwargs))
    assert len(store.get_dataset("d")) == 1  # nothing was lost


def test_filter_head_sample(capture, server: OpenAIServer) -> None:
    for i in range(12):
        _ask(server, f"question {i}", f"answer {i}")
    dataset = capture.open_store().get_dataset("d")
    assert _answers(dataset.head(2)) == ["answer 0", "answer 1"]
    assert _answers(dataset.filter(lambda e: e.completion["content"].endswith("1"))) == [
        "answer 1",
        "answer 11",
    ]
    sample = dataset.sample(5, seed=3)
    assert len(sample) == 5 and _answers(sample) == [
        a for a in _answers(dataset) if a in _answers(sample)
    ]
    assert _answers(dataset.sample(5, seed=3)) == _answers(sample)  # deterministic
    assert _answers(dataset.sample(5, seed=4)) != _answers(sample)
    assert len(dataset.sample(100)) == 12
    # A grown dataset keeps the sample, but for examples that hash lower.
    _ask(server, "question 12", "answer 12")
    grown = capture.open_store().get_dataset("d").sample(5, seed=3)
    assert len(set(_answers(grown)) & set(_answers(sample))) >= 4
    with pytest.raises(finetuner_otel.ConfigurationError, match="whole number"):
        dataset.head(-1)
    with pytest.raises(finetuner_otel.ConfigurationError, match="function of an Example"):
        dataset.filter("answer")  # type: ignore[arg-type]


def test_dedupe_keeps_the_latest_or_the_most_common_answer(capture, server: OpenAIServer) -> None:
    for answer in ["x", "y", "y", "z"]:
        _ask(server, "same question", answer)
    _ask(server, "other question", "w")
    dataset = capture.open_store().get_dataset("d")
    assert _answers(dataset.dedupe()) == ["z", "w"]
    assert _answers(dataset.dedupe(keep="most_common")) == ["y", "w"]
    with pytest.raises(finetuner_otel.ConfigurationError, match="most_common"):
        dataset.dedupe(keep="first")
