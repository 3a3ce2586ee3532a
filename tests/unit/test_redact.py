"""``finetuner_otel._redact``: the Redactor on texts, JSON values, semconv parts and messages."""

from __future__ import annotations

import re
from typing import Any

import pytest

from finetuner_otel import ConfigurationError
from finetuner_otel._redact import Redactor, from_environment, make_redactor

BUILTINS = Redactor(["email", "phone", "api_key"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to ann.lee+x@mail.example.co.uk now", "write to [REDACTED:email] now"),
        ("call +1 (555) 123-4567.", "call [REDACTED:phone]."),
        ("call 030 1234 5678", "call [REDACTED:phone]"),
        ("key sk-proj-abcdefghijklmnop1234", "key [REDACTED:api_key]"),
        ("AKIAABCDEFGHIJKLMNOP", "[REDACTED:api_key]"),
        ("ghp_" + "a" * 36, "[REDACTED:api_key]"),
        ("Authorization: Bearer abcdefghijklmnopqrst", "Authorization: Bearer [REDACTED:api_key]"),
    ],
)
def test_builtin_patterns(text: str, expected: str) -> None:
    assert BUILTINS.text(text) == expected


@pytest.mark.parametrize(
    "text",
    ["order 1234567", "version 3.11.7", "sk-short", "at @ sign", "ann@localhost"],
)
def test_builtin_patterns_leave_ordinary_text(text: str) -> None:
    assert BUILTINS.text(text) == text


def test_patterns_a_compiled_pattern_and_a_function() -> None:
    assert Redactor(r"\bAnn\b").text("Ann and Anne") == "[REDACTED] and Anne"
    assert Redactor([re.compile("x+", re.I)]).text("aXxb") == "a[REDACTED]b"
    assert Redactor(str.upper).text("shout") == "SHOUT"
    assert Redactor(str.upper).patterns == []


def test_bad_specs_are_clear_errors() -> None:
    with pytest.raises(ConfigurationError, match="at least one pattern or name"):
        Redactor([])
    with pytest.raises(ConfigurationError, match=r"'\(' is neither a built-in \(email, phone"):
        Redactor(["("])
    with pytest.raises(ConfigurationError, match="got 42"):
        Redactor([42])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="returned int, not str"):
        Redactor(lambda text: 0).text("x")  # type: ignore[arg-type,return-value]


def test_values_every_string_at_any_depth() -> None:
    value = {"to": "a@b.io", "cc": ["c@d.io", 3, None], "nested": {"t": ("e@f.io",)}}
    assert BUILTINS.value(value) == {
        "to": "[REDACTED:email]",
        "cc": ["[REDACTED:email]", 3, None],
        "nested": {"t": ["[REDACTED:email]"]},
    }


def test_parts_text_arguments_and_tool_results() -> None:
    mail = "a@b.io"
    assert BUILTINS.part({"type": "text", "content": mail})["content"] == "[REDACTED:email]"
    assert BUILTINS.part({"type": "refusal", "content": mail})["content"] == "[REDACTED:email]"
    assert BUILTINS.part({"type": "reasoning", "content": mail})["content"] == "[REDACTED:email]"
    call = {"type": "tool_call", "id": "c", "name": "send", "arguments": '{"to": "a@b.io"}'}
    assert BUILTINS.part(call)["arguments"] == '{"to": "[REDACTED:email]"}'
    as_text = {"type": "tool_call_response", "id": "c", "response": mail}
    assert BUILTINS.part(as_text)["response"] == "[REDACTED:email]"
    as_parts = {"type": "tool_call_response", "response": [{"type": "text", "content": mail}]}
    assert BUILTINS.part(as_parts)["response"] == [{"type": "text", "content": "[REDACTED:email]"}]


def test_media_parts_are_left_as_they_are() -> None:
    for part in (
        {"type": "uri", "modality": "image", "uri": "https://a@b.io/x.png"},
        {"type": "blob", "modality": "audio", "content": "a@b.io"},
        {"type": "file", "file_id": "a@b.io"},
        {"type": "text", "content": None},  # left out over the cap: nothing to redact
    ):
        assert BUILTINS.part(part) == part
    assert BUILTINS.part("not a part") == "not a part"


def test_messages_and_instruction_parts_without_changing_the_input() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "parts": [{"type": "text", "content": "mail a@b.io"}], "name": "x"},
        {"type": "text", "content": "a system instruction to a@b.io"},
    ]
    assert BUILTINS.messages(messages) == [
        {
            "role": "user",
            "parts": [{"type": "text", "content": "mail [REDACTED:email]"}],
            "name": "x",
        },
        {"type": "text", "content": "a system instruction to [REDACTED:email]"},
    ]
    assert messages[0]["parts"] == [{"type": "text", "content": "mail a@b.io"}]  # not in place


def test_make_redactor_and_the_environment() -> None:
    assert make_redactor(None) is None
    assert make_redactor("") is None
    assert make_redactor([]) is None
    assert make_redactor(BUILTINS) is BUILTINS  # type: ignore[arg-type]
    assert make_redactor("email").text("a@b.io") == "[REDACTED:email]"  # type: ignore[union-attr]
    assert from_environment(None) is None and from_environment(" ") is None
    redactor = from_environment(" email , phone,")
    assert redactor is not None and len(redactor.patterns) == 2
    with pytest.raises(ConfigurationError, match=r"FINETUNER_REDACT names \['ssn'\]"):
        from_environment("email,ssn")


@pytest.mark.parametrize(
    "text",
    ["on 2026-12-01 we met", "at 2026-12-01T10:00:00Z", "from 192.168.100.200", "a 10.0.0.1 b"],
)
def test_phone_leaves_dates_and_addresses_alone(text: str) -> None:
    """Dates and IPv4 addresses have as many digits as a phone number: they stay (training data
    needs its dates), while the numbers around them still go."""
    redactor = Redactor(["phone"])
    assert redactor.text(text) == text
    assert redactor.text(f"{text}, call tel:+14155550132") == f"{text}, call tel:[REDACTED:phone]"
