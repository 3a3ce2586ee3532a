"""Versioned prompts, and choosing examples by prompt version and review status."""

from __future__ import annotations

from pathlib import Path

import pytest

import finetuner_otel
from finetuner_otel import Prompt
from finetuner_otel.testing import OpenAIServer, Reply

from .conftest import rows

CLASSIFY = Prompt(
    "classifier",
    [
        {"role": "system", "content": "Label the query as one of: {{labels}}."},
        {"role": "user", "content": "{{ query }}"},
    ],
)


def test_the_version_is_derived_from_the_content() -> None:
    same = Prompt("classifier", [dict(m) for m in CLASSIFY.template])
    assert same.version == CLASSIFY.version and same == CLASSIFY
    assert len(CLASSIFY.version) == 12
    edited = Prompt(
        "classifier",
        [
            {"role": "system", "content": "Label the query as exactly one of: {{labels}}."},
            {"role": "user", "content": "{{query}}"},
        ],
    )
    assert edited.version != CLASSIFY.version
    assert CLASSIFY.variables == ("labels", "query")
    assert Prompt("p", "Say {{x}}").template == [{"role": "user", "content": "Say {{x}}"}]


def test_rendering_fills_every_variable_and_names_what_is_wrong() -> None:
    rendered = CLASSIFY.messages(labels="a, b", query=42)
    assert rendered == [
        {"role": "system", "content": "Label the query as one of: a, b."},
        {"role": "user", "content": "42"},
    ]
    assert rendered.variables == {"labels": "a, b", "query": "42"}
    with pytest.raises(finetuner_otel.ConfigurationError, match=r"missing \['query'\]"):
        CLASSIFY.messages(labels="a")
    with pytest.raises(finetuner_otel.ConfigurationError, match=r"unknown \['lang'\]"):
        CLASSIFY.messages(labels="a", query="q", lang="en")


@pytest.mark.parametrize(
    ("name", "template", "message"),
    [
        ("", "x", "non-empty name"),
        ("p", [], "non-empty list"),
        ("p", {"role": "user", "content": "x"}, "non-empty list"),
        ("p", [{"role": "robot", "content": "x"}], "message 1: give a role"),
        ("p", [{"role": "user", "content": ["x"]}], "text content"),
    ],
)
def test_bad_templates_are_refused(name: str, template: object, message: str) -> None:
    with pytest.raises(finetuner_otel.ConfigurationError, match=message):
        Prompt(name, template)  # type: ignore[arg-type]


def _classify(server: OpenAIServer, prompt: Prompt, query: str, label: str) -> None:
    server.enqueue(Reply(label))
    server.client().chat.completions.create(
        model="m", messages=prompt.messages(labels="spam, ham", query=query), dataset_name="d"
    )


def test_calls_are_tagged_with_the_prompt_and_chosen_by_version(
    capture, server: OpenAIServer, tmp_path: Path
) -> None:
    v2 = Prompt(
        "classifier",
        [
            {"role": "system", "content": "Classify as {{labels}}. One word."},
            {"role": "user", "content": "{{query}}"},
        ],
    )
    _classify(server, CLASSIFY, "win money", "spam")
    _classify(server, v2, "lunch?", "ham")
    server.enqueue(Reply("hello"))
    server.client().chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], dataset_name="d"
    )
    # the SDK sent plain messages
    assert server.requests[0].json["messages"] == CLASSIFY.messages(
        labels="spam, ham", query="win money"
    )
    recorded = rows(capture)
    assert [(r["prompt_name"], r["prompt_version"]) for r in recorded] == [
        ("classifier", CLASSIFY.version),
        ("classifier", v2.version),
        (None, None),
    ]
    assert recorded[0]["prompt_variables"] == '{"labels":"spam, ham","query":"win money"}'

    store = capture.open_store()
    [first] = store.get_dataset("d", prompt=CLASSIFY)
    assert first.prompt_variables == {"labels": "spam, ham", "query": "win money"}
    assert [e.completion["content"] for e in store.get_dataset("d", prompt="classifier")] == [
        "spam",
        "ham",
    ]
    assert len(store.get_dataset("d", prompt_version=v2.version)) == 1
    with pytest.raises(finetuner_otel.ConfigurationError, match="is version"):
        store.get_dataset("d", prompt=CLASSIFY, prompt_version=v2.version)

    # re-rendered with the new template: the same answers, new inputs
    rerendered = store.get_dataset("d", prompt=CLASSIFY).rerender(v2)
    assert rerendered[0].messages == v2.messages(labels="spam, ham", query="win money")
    assert rerendered[0].completion == first.completion
    assert rerendered[0].prompt_version == v2.version
    with pytest.raises(finetuner_otel.ConfigurationError, match="1 of the 3 examples"):
        store.get_dataset("d").rerender(v2)
    with pytest.raises(finetuner_otel.ConfigurationError, match=r"variables \['labels', 'query'\]"):
        store.get_dataset("d", prompt=CLASSIFY).rerender(Prompt("other", "{{text}}"))


def test_responses_input_from_a_prompt_is_tagged(capture, server: OpenAIServer) -> None:
    server.enqueue(Reply("spam"))
    server.client().responses.create(
        model="m", input=CLASSIFY.messages(labels="spam, ham", query="win"), dataset_name="r"
    )
    [row] = rows(capture)
    assert (row["prompt_name"], row["prompt_version"]) == ("classifier", CLASSIFY.version)


def test_choosing_by_review_status(capture, server: OpenAIServer) -> None:
    for answer in ("a", "b", "c", "d"):
        _classify(server, CLASSIFY, answer, answer)
    ids = [r["id"] for r in rows(capture)]
    store = capture.open_store()
    store.accept(ids[0])
    store.correct(ids[1], "B")
    store.reject(ids[2])

    def answers(status: str) -> list[str]:
        return [e.completion["content"] for e in store.get_dataset("d", status=status)]

    assert answers("accepted") == ["a"]
    assert answers("corrected") == ["B"]
    assert answers("unreviewed") == ["d"]
    with pytest.raises(finetuner_otel.ConfigurationError, match="status is one of"):
        store.get_dataset("d", status="good")
