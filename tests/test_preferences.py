"""Preference (DPO) data checked by the rules of OpenAI, Together and Fireworks: the records,
``validate_jsonl`` on a DPO file, and ``upload_preferences`` (validated before it uploads)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import finetuner_otel
from finetuner_otel.finetune import DatasetInvalidError, Finetuner, OpenAIProvider
from finetuner_otel.store import validate_preference_records
from finetuner_otel.testing import OpenAIServer, Reply, ToolCall

from .conftest import rows


def _pair(**changes: Any) -> dict[str, Any]:
    pair: dict[str, Any] = {
        "input": {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "How cold is San Francisco today?"},
            ]
        },
        "preferred_output": [{"role": "assistant", "content": "About 14 C."}],
        "non_preferred_output": [{"role": "assistant", "content": "It is cold."}],
    }
    pair.update(changes)
    return pair


TOOL_OUTPUT = [
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "weather", "arguments": "{}"},
            }
        ],
    }
]


def _codes(report: Any) -> list[str]:
    return [p.code for p in report.problems]


def test_a_valid_dpo_file_passes_validate_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "dpo.jsonl"
    path.write_text("".join(json.dumps(_pair()) + "\n" for _ in range(3)))
    report = finetuner_otel.validate_jsonl(path)  # was: missing_messages_list on every line
    assert report.ok, report.summary()
    assert report.examples == 3 and "missing_messages_list" not in report.errors
    # and a chat file is still checked as one
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    assert _codes(finetuner_otel.validate_jsonl(chat)) == [
        "example_missing_assistant_message",
        "missing_system_message",
    ]


@pytest.mark.parametrize(
    ("pair", "code", "words"),
    [
        (_pair(non_preferred_output=TOOL_OUTPUT), "tool_call_output", "train on text answers"),
        (_pair(preferred_output=[]), "invalid_output", "exactly one assistant message"),
        (
            _pair(preferred_output=[{"role": "user", "content": "x"}]),
            "invalid_output",
            "exactly one assistant message",
        ),
        (
            _pair(non_preferred_output=[{"role": "assistant", "content": "About 14 C."}]),
            "identical_outputs",
            "nothing to learn",
        ),
        (_pair(input={"messages": []}), "missing_input", "input.messages"),
        (
            _pair(
                input={
                    "messages": [
                        {"role": "user", "content": "hi"},
                        {"role": "assistant", "content": "hello"},
                    ]
                }
            ),
            "input_ends_with_assistant",
            "leave that answer out",
        ),
        (_pair(extra=1), "example_unrecognized_key", "unknown keys ['extra']"),
    ],
)
def test_each_rule_is_named(pair: dict[str, Any], code: str, words: str) -> None:
    for provider in (None, "openai", "together", "fireworks"):
        report = validate_preference_records([pair] * 3, provider=provider, ids=["a", "b", "c"])
        assert code in report.errors, (provider, report.summary())
        first = next(p for p in report.problems if p.code == code)
        assert words in first.detail and first.example_id == "a"


def test_the_rules_of_one_provider() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}
    parts = _pair(input={"messages": [{"role": "user", "content": [image]}]})
    assert "non_text_input" in validate_preference_records([parts] * 3, provider="openai").errors
    assert validate_preference_records([parts] * 3, provider="together").ok
    text_parts = _pair(
        input={"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}
    )
    fireworks = validate_preference_records([text_parts] * 3, provider="fireworks")
    assert "Fireworks takes string content" in fireworks.summary()
    assert validate_preference_records([text_parts] * 3, provider="openai").ok
    tool_role = _pair(
        input={
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "tool", "tool_call_id": "c", "content": "y"},
            ]
        }
    )
    assert (
        "unrecognized_role"
        in validate_preference_records([tool_role] * 3, provider="fireworks").errors
    )
    assert validate_preference_records([tool_role] * 3, provider="together").ok
    few = validate_preference_records([_pair(), _pair()], provider="fireworks")
    assert list(few.errors) == ["too_few_examples"] and "at least 3" in few.summary()
    assert validate_preference_records([_pair(), _pair()], provider="openai").ok
    with pytest.raises(finetuner_otel.ConfigurationError, match="openai, together, fireworks"):
        validate_preference_records([], provider="anyscale")


def test_upload_preferences_refuses_a_tool_call_pair_and_uploads_nothing(
    capture, server: OpenAIServer
) -> None:
    client = server.client()
    server.enqueue(Reply("food"), Reply(None, tool_calls=[ToolCall("lookup", '{"q": "x"}')]))
    for query in ("pizza", "where is it?"):
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": query}],
            dataset_name="prefs",
        )
    text_call, tool_call = [r["id"] for r in rows(capture)]
    store = capture.open_store()
    store.prefer(text_call, "food, clearly")
    store.prefer(tool_call, "It is on Main Street.")  # over the recorded tool call
    ft = Finetuner(OpenAIProvider(server.client(max_retries=0), name="openai"), store=store)
    with pytest.raises(DatasetInvalidError) as refused:
        ft.upload_preferences("prefs")
    message = str(refused.value)
    assert "break OpenAI's DPO rules; nothing was uploaded" in message
    assert f"example 2 ({tool_call}): error tool_call_output" in message
    assert "non_preferred_output is a tool call" in message
    assert refused.value.report.errors == {"tool_call_output": 1}
    assert server.fine_tuning.files == {}


def test_another_provider_gets_every_providers_rules(capture, server: OpenAIServer) -> None:
    server.enqueue(Reply("food"))
    server.client().chat.completions.create(
        model="m", messages=[{"role": "user", "content": "pizza"}], dataset_name="prefs"
    )
    store = capture.open_store()
    store.prefer(rows(capture)[0]["id"], "food, clearly")
    ft = Finetuner.for_openai(client=server.client(max_retries=0), store=store)  # a host name
    with pytest.raises(DatasetInvalidError, match="Fireworks' DPO needs at least 3") as refused:
        ft.upload_preferences("prefs")
    assert "break OpenAI's, Together's and Fireworks' DPO rules" in str(refused.value)
