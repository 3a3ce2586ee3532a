"""validate() and stats(): OpenAI's published chat fine-tuning checks, extended; token counts."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import tiktoken

import finetuner_otel
from finetuner_otel.testing import OpenAIServer, Reply, ToolCall

# One token per UTF-8 byte: a real tiktoken Encoding that needs no download, so counts are exact.
BYTES = tiktoken.Encoding(
    name="bytes",
    pat_str=r"[\s\S]",
    mergeable_ranks={bytes([i]): i for i in range(256)},
    special_tokens={},
)

USER = {"role": "user", "content": "hi"}
ASSISTANT = {"role": "assistant", "content": "yo"}
SYSTEM = {"role": "system", "content": "be brief"}


def openai_notebook_checks(dataset: list[Any]) -> Counter[str]:
    """The format checks of OpenAI's cookbook notebook "Data preparation and analysis for chat
    model fine-tuning", restated as the oracle for files within its scope."""
    errors: Counter[str] = Counter()
    for ex in dataset:
        if not isinstance(ex, dict):
            errors["data_type"] += 1
            continue
        messages = ex.get("messages", None)
        if not messages:
            errors["missing_messages_list"] += 1
            continue
        for message in messages:
            if "role" not in message or "content" not in message:
                errors["message_missing_key"] += 1
            if any(
                k not in ("role", "content", "name", "function_call", "weight") for k in message
            ):
                errors["message_unrecognized_key"] += 1
            if message.get("role", None) not in ("system", "user", "assistant", "function"):
                errors["unrecognized_role"] += 1
            content = message.get("content", None)
            function_call = message.get("function_call", None)
            if (not content and not function_call) or not isinstance(content, str):
                errors["missing_content"] += 1
        if not any(message.get("role", None) == "assistant" for message in messages):
            errors["example_missing_assistant_message"] += 1
    return errors


# Hand-made files, each with one kind of error (some with several occurrences).
CLASSIC_FILES: dict[str, list[Any]] = {
    "valid": [{"messages": [SYSTEM, USER, ASSISTANT]}, {"messages": [USER, ASSISTANT]}],
    "data_type": [["not", "an", "object"], {"messages": [USER, ASSISTANT]}, "text"],
    "missing_messages_list": [{"messages": []}, {"prompt": "x", "completion": "y"}],
    "message_missing_key": [{"messages": [{"role": "user"}, ASSISTANT]}],
    "message_unrecognized_key": [{"messages": [{**USER, "lang": "en"}, {**ASSISTANT, "score": 1}]}],
    "unrecognized_role": [{"messages": [{"role": "bot", "content": "x"}, USER, ASSISTANT]}],
    "missing_content": [
        {"messages": [{"role": "user", "content": ""}, ASSISTANT]},
        {"messages": [USER, {"role": "assistant", "content": 42}]},
    ],
    "example_missing_assistant_message": [{"messages": [SYSTEM, USER]}],
}


def _write(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.parametrize("name", sorted(CLASSIC_FILES))
def test_agrees_with_openais_published_checks(tmp_path: Path, name: str) -> None:
    records = CLASSIC_FILES[name]
    report = finetuner_otel.validate_jsonl(_write(tmp_path / f"{name}.jsonl", records))
    expected = openai_notebook_checks(records)
    assert report.errors == expected
    assert report.examples == len(records)
    assert report.ok is (name == "valid")
    if name != "valid":
        assert name in report.errors  # a missing content key is also missing_content
        assert name in report.summary()


def test_warnings_for_missing_system_and_user_messages(tmp_path: Path) -> None:
    records = [
        {"messages": [USER, ASSISTANT]},  # no system
        {"messages": [SYSTEM, ASSISTANT]},  # no user
        {"messages": [SYSTEM, USER, ASSISTANT]},
    ]
    report = finetuner_otel.validate_jsonl(_write(tmp_path / "w.jsonl", records))
    assert report.ok
    assert report.warnings == {"missing_system_message": 1, "missing_user_message": 1}
    assert [(p.example, p.code) for p in report.problems] == [
        (1, "missing_system_message"),
        (2, "missing_user_message"),
    ]


CALL = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize(
    ("record", "errors"),
    [
        # the extended format, valid: tools, tool calls, tool results, weight, content parts
        (
            {
                "messages": [
                    SYSTEM,
                    {"role": "user", "content": [{"type": "text", "text": "look it up"}]},
                    {"role": "assistant", "tool_calls": [CALL]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "42"},
                    {"role": "assistant", "content": "42", "weight": 0},
                    USER,
                    {"role": "assistant", "content": "done", "weight": 1},
                ],
                "tools": TOOLS,
                "parallel_tool_calls": False,
            },
            {},
        ),
        (
            {
                "messages": [
                    USER,
                    {"role": "tool", "tool_call_id": "nope", "content": "x"},
                    ASSISTANT,
                ]
            },
            {"unknown_tool_call_id": 1},
        ),
        ({"messages": [USER, {**ASSISTANT, "weight": 2}]}, {"invalid_weight": 1}),
        ({"messages": [{**USER, "weight": 1}, ASSISTANT]}, {"invalid_weight": 1}),
        (
            {"messages": [USER, {"role": "assistant", "tool_calls": [{"id": "c"}]}, ASSISTANT]},
            {"invalid_tool_call": 1},
        ),
        ({"messages": [USER, ASSISTANT], "tools": [{"name": "x"}]}, {"invalid_tools": 1}),
        ({"messages": [USER, ASSISTANT], "model": "gpt-4o"}, {"example_unrecognized_key": 1}),
        (
            {"messages": [USER, {"role": "assistant", "content": [{"type": "video"}]}]},
            {"missing_content": 1},
        ),
    ],
)
def test_extended_checks(tmp_path: Path, record: dict[str, Any], errors: dict[str, int]) -> None:
    report = finetuner_otel.validate_jsonl(_write(tmp_path / "x.jsonl", [record]))
    assert report.errors == errors
    for problem in report.problems:
        if problem.severity == "error":
            assert problem.example == 1 and problem.detail


def test_token_counts_follow_openais_notebook(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "t.jsonl",
        [{"messages": [USER, ASSISTANT]}, {"messages": [SYSTEM, USER, ASSISTANT]}],
    )
    report = finetuner_otel.validate_jsonl(path, encoding=BYTES, context=40)
    # 3 to prime the reply, 3 a message, and the bytes of every value
    first = 3 + (3 + len("user") + len("hi")) + (3 + len("assistant") + len("yo"))
    second = first + 3 + len("system") + len("be brief")
    stats = report.stats
    assert (stats.tokens.min, stats.tokens.max) == (first, second)
    assert (stats.assistant_tokens.min, stats.assistant_tokens.max) == (2, 2)
    assert stats.encoding == "bytes"
    # second is over a 40-token context: an error, and billed at the cap
    assert second > 40 >= first
    assert report.errors == {"over_context": 1} and stats.over_context == 1
    # OpenAI's default epochs for 2 examples: min(25, 100 // 2)
    assert stats.epochs == 25
    assert stats.billed_tokens_per_epoch == first + 40
    assert stats.training_tokens == 25 * (first + 40)
    text = report.summary()
    assert "over_context: 1" in text and "training tokens" in text
    fixed = finetuner_otel.validate_jsonl(path, encoding=BYTES, context=40, epochs=2)
    assert fixed.stats.training_tokens == 2 * (first + 40)


def test_default_epochs_match_openais_rule() -> None:
    from finetuner_otel.store._validate import default_epochs

    assert [default_epochs(n) for n in (1, 10, 34, 100, 8_333, 8_334, 100_000)] == [
        25,
        10,
        3,
        3,
        3,
        2,
        1,
    ]


def test_bad_files_and_arguments_are_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"messages": []}\n{not json\n')
    with pytest.raises(finetuner_otel.ConfigurationError, match="line 2: not JSON"):
        finetuner_otel.validate_jsonl(broken)
    with pytest.raises(finetuner_otel.ConfigurationError, match="not a file"):
        finetuner_otel.validate_jsonl(tmp_path / "missing.jsonl")
    good = _write(tmp_path / "g.jsonl", [{"messages": [USER, ASSISTANT]}])
    with pytest.raises(finetuner_otel.ConfigurationError, match="epochs"):
        finetuner_otel.validate_jsonl(good, epochs=0)
    with pytest.raises(finetuner_otel.ConfigurationError, match="encoding"):
        finetuner_otel.validate_jsonl(good, encoding=3)


def test_without_a_known_encoding_the_checks_still_run(tmp_path: Path) -> None:
    path = _write(tmp_path / "g.jsonl", [{"messages": [USER, {"role": "bot", "content": "x"}]}])
    report = finetuner_otel.validate_jsonl(path, model="my-local-model")
    assert report.errors == {"unrecognized_role": 1, "example_missing_assistant_message": 1}
    assert report.stats.tokens is None
    assert "does not know the encoding of 'my-local-model'" in report.stats.token_note
    assert "token counts unavailable" in report.summary()


def test_a_captured_dataset_validates_with_its_model(capture, server: OpenAIServer) -> None:
    client = server.client()
    server.enqueue(Reply("Paris"))
    client.chat.completions.create(
        model="m",
        messages=[SYSTEM, {"role": "user", "content": "capital of France?"}],
        dataset_name="d",
    )
    server.enqueue(Reply(tool_calls=[ToolCall("lookup", {"q": "x"})]))
    client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "look up x"}],
        tools=TOOLS,
        dataset_name="d",
    )
    dataset = capture.open_store().get_dataset("d")
    report = dataset.validate(encoding=BYTES)
    assert report.ok, report.summary()
    assert report.warnings == {"missing_system_message": 1}
    assert report.problems[0].example_id == dataset[1].id
    stats = dataset.stats(encoding=BYTES, epochs=3)
    assert stats.examples == 2 and stats.epochs == 3
    assert stats.context is None  # "m" is no OpenAI model: no context check
    # the model the calls used picks the encoding: unknown to tiktoken here, and said so
    assert "'m'" in dataset.validate().stats.token_note
