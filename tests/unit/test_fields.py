"""``finetuner_otel._fields``: one way to read a value, whether a dict or an SDK object."""

from __future__ import annotations

import openai
from openai.types.chat import ChatCompletionMessage

from finetuner_otel._fields import field, fields_of, getter, given


def sdk_message() -> ChatCompletionMessage:
    return ChatCompletionMessage.model_validate(
        {"role": "assistant", "content": "hi", "vendor_extra": 7}
    )


def test_given_is_false_for_none_and_the_sdks_sentinels() -> None:
    assert not given(None)
    assert not given(openai.NOT_GIVEN)
    assert not given(openai.omit)
    values: tuple[object, ...] = (0, "", [], False, {})
    for value in values:
        assert given(value)


def test_field_reads_mappings_sdk_objects_and_plain_objects() -> None:
    assert field({"a": 1}, "a") == 1
    assert field({"a": 1}, "b") is None
    message = sdk_message()
    assert field(message, "content") == "hi"
    assert field(message, "vendor_extra") == 7  # a field the SDK does not declare
    assert field(message, "nope") is None

    class Plain:
        a = 3

    assert field(Plain(), "a") == 3
    assert field(Plain(), "b") is None
    assert field(None, "a") is None


def test_fields_of_gives_the_declared_fields_or_none() -> None:
    data = {"a": 1}
    assert fields_of(data) is data
    declared = fields_of(sdk_message())
    assert declared is not None
    assert declared["content"] == "hi" and "vendor_extra" not in declared
    assert fields_of(object()) is None


def test_getter_reads_like_field() -> None:
    message = sdk_message()
    read = getter(message)
    assert read("role") == "assistant"
    assert read("missing") is None
    plain_read = getter(type("P", (), {"x": 5})())
    assert plain_read("x") == 5 and plain_read("y") is None
