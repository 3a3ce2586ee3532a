"""instructor against the local server, captured by finetuner-otel.

instructor has no tracing of its own (its hooks are callbacks, not spans). Its default mode asks
for the answer as a tool call; a validation error is sent back and the model asked again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import instructor
import pytest
from pydantic import BaseModel, field_validator

from finetuner_otel.testing import OpenAIServer, Reply, ToolCall

from ._support import assert_examples, capture_and_compare, text_answer, tool_answer

QUESTION = [
    {"role": "system", "content": "Extract the city."},
    {"role": "user", "content": "I live in Paris, France."},
]
PARIS = '{"name": "Paris", "country": "France"}'


class City(BaseModel):
    name: str
    country: str


class CapitalCity(City):
    @field_validator("name")
    @classmethod
    def known(cls, name: str) -> str:
        if name != "Paris":
            raise ValueError("not a capital city")
        return name


def as_tool(arguments: str, number: int = 1, name: str = "City") -> ToolCall:
    return ToolCall(name, arguments, f"call_city_{number}")


def client(server: OpenAIServer, mode: instructor.Mode = instructor.Mode.TOOLS) -> Any:
    return instructor.from_openai(server.client(max_retries=0), mode=mode)


def test_create_tools_mode(server: OpenAIServer, db: Path) -> None:
    def call() -> City:
        return client(server).chat.completions.create(
            model="gpt-4o-mini", response_model=City, messages=QUESTION
        )

    captured = capture_and_compare(server, db, call, [Reply(None, tool_calls=[as_tool(PARIS)])])
    assert captured.result.model_dump() == {"name": "Paris", "country": "France"}
    assert_examples(captured, [tool_answer(as_tool(PARIS))])


def test_create_json_schema_mode(server: OpenAIServer, db: Path) -> None:
    def call() -> City:
        return client(server, instructor.Mode.JSON_SCHEMA).chat.completions.create(
            model="gpt-4o-mini", response_model=City, messages=QUESTION
        )

    captured = capture_and_compare(server, db, call, [Reply(PARIS)])
    assert captured.result.model_dump() == {"name": "Paris", "country": "France"}
    assert_examples(captured, [text_answer(PARIS)])


def test_async_create(server: OpenAIServer, db: Path, run: Any) -> None:
    async def create() -> City:
        async with server.async_client(max_retries=0) as sdk:
            extractor = instructor.from_openai(sdk, mode=instructor.Mode.TOOLS)
            return await extractor.chat.completions.create(
                model="gpt-4o-mini", response_model=City, messages=QUESTION
            )

    captured = capture_and_compare(
        server, db, lambda: run(create()), [Reply(None, tool_calls=[as_tool(PARIS)])]
    )
    assert captured.result.model_dump() == {"name": "Paris", "country": "France"}
    assert_examples(captured, [tool_answer(as_tool(PARIS))])


@pytest.mark.parametrize("mode", [instructor.Mode.TOOLS, instructor.Mode.JSON_SCHEMA])
def test_create_partial_streamed(server: OpenAIServer, db: Path, mode: instructor.Mode) -> None:
    if mode == instructor.Mode.TOOLS:
        reply, answer = (
            Reply(None, tool_calls=[as_tool(PARIS)], chunk_size=5),
            tool_answer(as_tool(PARIS)),
        )
    else:
        reply, answer = Reply(PARIS, chunk_size=5), text_answer(PARIS)

    def call() -> list[Any]:
        partials = client(server, mode).chat.completions.create_partial(
            model="gpt-4o-mini", response_model=City, messages=QUESTION
        )
        return [p.model_dump() for p in partials]

    captured = capture_and_compare(server, db, call, [reply])
    assert captured.result[-1] == {"name": "Paris", "country": "France"}
    assert len(captured.result) > 2  # it did stream
    assert_examples(captured, [answer])


def test_validation_error_is_sent_back_and_retried(server: OpenAIServer, db: Path) -> None:
    """Two model calls: the first answer fails validation, instructor sends the error back as
    the tool's result, the second passes. Both answers are complete, so both are trainable: the
    store cannot know that the app rejected the first (review it with store.reject)."""
    lyon = '{"name": "Lyon", "country": "France"}'

    def call() -> City:
        return client(server).chat.completions.create(
            model="gpt-4o-mini", response_model=CapitalCity, messages=QUESTION, max_retries=2
        )

    replies = [
        Reply(None, tool_calls=[as_tool(lyon, 1, "CapitalCity")]),
        Reply(None, tool_calls=[as_tool(PARIS, 2, "CapitalCity")]),
    ]
    captured = capture_and_compare(server, db, call, replies)
    assert captured.result.model_dump() == {"name": "Paris", "country": "France"}
    retry = captured.requests[1].json["messages"]
    assert "not a capital city" in str(retry[-1]["content"])
    assert_examples(
        captured,
        [
            tool_answer(as_tool(lyon, 1, "CapitalCity")),
            tool_answer(as_tool(PARIS, 2, "CapitalCity")),
        ],
    )


def test_responses_tools_mode(server: OpenAIServer, db: Path) -> None:
    def call() -> City:
        return client(server, instructor.Mode.RESPONSES_TOOLS).responses.create(
            model="gpt-4o-mini", response_model=City, input=QUESTION
        )

    captured = capture_and_compare(server, db, call, [Reply(None, tool_calls=[as_tool(PARIS)])])
    assert captured.result.model_dump() == {"name": "Paris", "country": "France"}
    assert_examples(captured, [tool_answer(as_tool(PARIS))])
