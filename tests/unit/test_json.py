"""``finetuner_otel._json.dumps``: the one encoder for captured content."""

from __future__ import annotations

import json

import pydantic
from openai.types.chat import ChatCompletionMessage

from finetuner_otel._json import dumps


class Answer(pydantic.BaseModel):
    value: int


def test_compact_and_utf8() -> None:
    assert dumps({"a": [1, 2], "b": "é 😀"}) == '{"a":[1,2],"b":"é 😀"}'


def test_sort_keys_gives_one_text_for_equal_values() -> None:
    assert dumps({"b": 1, "a": 2}, sort_keys=True) == dumps({"a": 2, "b": 1}, sort_keys=True)
    assert dumps({"b": 1, "a": 2}) == '{"b":1,"a":2}'  # insertion order otherwise


def test_sdk_objects_are_dumped_as_json_without_unset_fields() -> None:
    message = ChatCompletionMessage.model_validate({"role": "assistant", "content": "x"})
    assert json.loads(dumps(message)) == {"role": "assistant", "content": "x"}


def test_a_pydantic_class_becomes_its_json_schema() -> None:
    encoded = json.loads(dumps({"response_format": Answer}))
    assert encoded["response_format"] == {
        "type": "json_schema",
        "name": "Answer",
        "schema": Answer.model_json_schema(),
    }
    assert json.loads(dumps(int)) == "int"  # other classes: their name


def test_bytes_sets_tuples_and_other_objects() -> None:
    assert dumps(b"\x00\xff") == '"AP8="'
    assert dumps(memoryview(b"ab")) == '"YWI="'
    assert dumps((1, 2)) == "[1,2]"
    assert dumps(frozenset({3})) == "[3]"
    assert dumps([object]) == '["object"]'
    marker = object()
    assert dumps(marker) == json.dumps(repr(marker))
