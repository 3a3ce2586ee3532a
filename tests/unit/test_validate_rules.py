"""``finetuner_otel.store._validate``: OpenAI's chat fine-tuning checks on parsed records, one
rule at a time, with no file, no store and no token counts (tests/test_validate.py has those)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from finetuner_otel.store._validate import (
    Distribution,
    default_epochs,
    training_context,
    validate_records,
)

SYSTEM = {"role": "system", "content": "be brief"}
USER = {"role": "user", "content": "hi"}
ASSISTANT = {"role": "assistant", "content": "yo"}
CALL = {
    "role": "assistant",
    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
}
RESULT = {"role": "tool", "tool_call_id": "c1", "content": "42"}
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


def errors_of(*records: Any) -> Counter[str]:
    return validate_records(records).errors


def test_good_examples_have_no_errors_and_no_warnings() -> None:
    report = validate_records(
        [
            {"messages": [SYSTEM, USER, ASSISTANT]},
            {"messages": [SYSTEM, USER, CALL, RESULT, {**ASSISTANT, "weight": 1}], "tools": TOOLS},
            {"messages": [USER, {"role": "assistant", "content": [{"type": "text", "text": "x"}]}]},
        ]
    )
    assert report.ok and report.examples == 3
    assert report.warnings == Counter(missing_system_message=1)
    assert report.stats.messages == Distribution.of([3, 5, 2])
    assert report.stats.tokens is None and report.stats.token_note  # no model: no counts


@pytest.mark.parametrize(
    ("record", "code"),
    [
        ([USER, ASSISTANT], "data_type"),
        ({"messages": []}, "missing_messages_list"),
        ({"prompt": "a", "completion": "b"}, "missing_messages_list"),
        ({"messages": [USER, {"role": "assistant", "name": "a"}]}, "message_missing_key"),
        ({"messages": [USER, {**ASSISTANT, "mood": "glad"}]}, "message_unrecognized_key"),
        ({"messages": [{"role": "human", "content": "hi"}, ASSISTANT]}, "unrecognized_role"),
        ({"messages": [USER, {"role": "assistant", "content": ""}]}, "missing_content"),
        (
            {"messages": [USER, {"role": "assistant", "content": [{"type": "x"}]}]},
            "missing_content",
        ),
        ({"messages": [SYSTEM, USER]}, "example_missing_assistant_message"),
        ({"messages": [USER, ASSISTANT], "extra": 1}, "example_unrecognized_key"),
        ({"messages": [USER, {**ASSISTANT, "weight": 2}]}, "invalid_weight"),
        ({"messages": [{**USER, "weight": 0}, ASSISTANT]}, "invalid_weight"),
        (
            {"messages": [USER, {"role": "assistant", "tool_calls": [{"id": "c"}]}]},
            "invalid_tool_call",
        ),
        (
            {"messages": [USER, CALL, {**RESULT, "tool_call_id": "c9"}, ASSISTANT]},
            "unknown_tool_call_id",
        ),
        ({"messages": [USER, ASSISTANT], "tools": [{"type": "function"}]}, "invalid_tools"),
    ],
)
def test_each_check_finds_its_error(record: Any, code: str) -> None:
    report = validate_records([record])
    assert not report.ok
    # a message without content also has no content, as the notebook counts it
    also = {"missing_content"} if code == "message_missing_key" else set()
    assert set(report.errors) == {code} | also
    problem = next(p for p in report.problems if p.severity == "error")
    assert (problem.example, problem.code) == (1, code) and problem.detail


def test_message_checks_count_once_per_message_example_checks_once_per_example() -> None:
    bad_messages = {
        "messages": [{"role": "robot", "content": "a"}, {"role": "robot", "content": "b"}]
    }
    assert errors_of(bad_messages) == Counter(
        unrecognized_role=2, example_missing_assistant_message=1
    )
    assert validate_records([bad_messages]).warnings == Counter(
        missing_system_message=1, missing_user_message=1
    )


def test_problems_name_the_example_and_its_id() -> None:
    report = validate_records(
        [{"messages": [USER, ASSISTANT]}, {"messages": [USER]}], ids=["call-a", "call-b"]
    )
    (problem,) = [p for p in report.problems if p.severity == "error"]
    assert str(problem) == (
        "example 2 (call-b): error example_missing_assistant_message: no assistant message: "
        "an example needs at least one to train on"
    )
    assert "example_missing_assistant_message: 1" in report.summary()


def test_default_epochs_follow_openais_rule() -> None:
    assert default_epochs(50) == 3  # 150 passes: within [100, 25000]
    assert default_epochs(10) == 10  # 100 // 10
    assert default_epochs(1) == 25  # 100, capped at 25 epochs
    assert default_epochs(10_000) == 2  # 25000 // 10000
    assert default_epochs(100_000) == 1
    assert default_epochs(0) == 3


def test_training_context_by_longest_prefix_and_base_model() -> None:
    assert training_context("gpt-3.5-turbo-0125") == 16_385
    assert training_context("gpt-4o-mini-2024-07-18") == 65_536
    assert training_context("ft:gpt-3.5-turbo-0125:acme::abc123") == 16_385
    assert training_context("llama-3") is None and training_context(None) is None


def test_distribution_quantiles() -> None:
    dist = Distribution.of([10, 0, 20, 30, 40])
    assert dist == Distribution(min=0, max=40, mean=20.0, median=20, p5=2.0, p95=38.0)
    assert Distribution.of([]) is None
