"""litellm against the local server, captured by finetuner-otel.

litellm's tracing is OpenTelemetry: ``litellm.callbacks = ["otel"]`` adds its spans to the app's
TracerProvider (the one instrument() joins), each call a root trace of its own with the same
``gen_ai.response.id`` as ours: the case that must stay one row. Its spans end on a background
thread after the call returns, so each run waits for them. litellm reads streams through
``with_raw_response``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import litellm
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel

from finetuner_otel.testing import OpenAIServer, Reply, ToolCall

from ._support import assert_examples, capture_and_compare, text_answer, tool_answer

# litellm's own types, when pydantic first builds them: not ours to fix.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Items? .* on TypedDict class .* (is|are) using the `ReadOnly` qualifier:UserWarning"
)

QUESTION = [
    {"role": "system", "content": "Answer in one word."},
    {"role": "user", "content": "Capital of France?"},
]


# Findings for the instrumentation (/work/notes/frameworks-findings.md); strict, so each turns
# into a failure to remove once it is fixed.
RESPONSES_NOT_SEEN = pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="litellm.responses() posts with its own HTTP client, not the openai SDK: nothing "
    "of ours sees it; litellm's own span of it has gen_ai.operation.name 'responses', which "
    "the exporter does not take as a model call (exporters/_spans.py _CALL_OPERATIONS)",
)


def litellm_calls(spans: InMemorySpanExporter) -> int:
    """litellm's own spans of model calls in what the app's exporter received."""
    return sum(
        1
        for s in spans.get_finished_spans()
        if s.instrumentation_scope.name == "litellm" and s.name == "litellm_request"
    )


@pytest.fixture(params=[False, True], ids=["tracing-off", "tracing-on"])
def settle(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    app_spans: InMemorySpanExporter,
    run: Any,
) -> Iterator[Callable[[int], None]]:
    """litellm's tracing on or off; with it on, waits for its span of each call. The wait
    turns the event loop, where litellm's callbacks of async calls are queued as tasks."""
    monkeypatch.setenv("OTEL_EXPORTER", "in_memory")  # litellm's own exporter: nowhere
    # litellm moves "otel" from callbacks into lists of its own on first use; its reset (the
    # one its own tests use) empties them all, so "off" is off after an "on" test.
    litellm.logging_callback_manager._reset_all_callbacks()
    litellm.callbacks = ["otel"] if request.param else []
    expected = 0

    def wait_for(calls: int) -> None:
        nonlocal expected
        expected += calls if request.param else 0
        deadline = time.monotonic() + 10
        while litellm_calls(app_spans) < expected and time.monotonic() < deadline:
            run(asyncio.sleep(0.02))
        assert litellm_calls(app_spans) == expected, "litellm's spans of its calls"

    yield wait_for
    litellm.logging_callback_manager._reset_all_callbacks()
    assert litellm_calls(app_spans) == expected


def ask(server: OpenAIServer, **kwargs: Any) -> dict[str, Any]:
    return {
        "model": "openai/gpt-4o-mini",
        "messages": QUESTION,
        "api_base": server.url,
        "api_key": "sk-test",
        "num_retries": 0,
        **kwargs,
    }


def test_completion(server: OpenAIServer, db: Path, settle: Any) -> None:
    captured = capture_and_compare(
        server, db, lambda: litellm.completion(**ask(server)), [Reply("Paris")], settle=settle
    )
    assert captured.result.choices[0].message.content == "Paris"
    assert_examples(captured, [text_answer("Paris")])


def test_acompletion(server: OpenAIServer, db: Path, settle: Any, run: Any) -> None:
    captured = capture_and_compare(
        server,
        db,
        lambda: run(litellm.acompletion(**ask(server))),
        [Reply("Paris")],
        settle=settle,
    )
    assert_examples(captured, [text_answer("Paris")])


def test_same_prompt_twice_at_once(server: OpenAIServer, db: Path, settle: Any, run: Any) -> None:
    """Two calls alike in all but their response ids, at the same moment: two rows, with
    litellm's spans (one per call, each its own trace) matched to their own call."""

    async def call() -> list[Any]:
        return list(await asyncio.gather(*(litellm.acompletion(**ask(server)) for _ in "ab")))

    captured = capture_and_compare(
        server, db, lambda: run(call()), [Reply("Paris"), Reply("Paris")], settle=settle
    )
    assert len({r["response_id"] for r in captured.rows}) == 2
    assert_examples(captured, [text_answer("Paris"), text_answer("Paris")])


def test_completion_streamed(server: OpenAIServer, db: Path, settle: Any) -> None:
    def call() -> list[Any]:
        return list(litellm.completion(**ask(server, stream=True)))

    captured = capture_and_compare(
        server, db, call, [Reply("Paris is the capital", chunk_size=3)], settle=settle
    )
    assert "".join(c.choices[0].delta.content or "" for c in captured.result) == (
        "Paris is the capital"
    )
    assert_examples(captured, [text_answer("Paris is the capital")])


def test_acompletion_streamed(server: OpenAIServer, db: Path, settle: Any, run: Any) -> None:
    async def call() -> list[Any]:
        stream = await litellm.acompletion(**ask(server, stream=True))
        return [chunk async for chunk in stream]

    captured = capture_and_compare(
        server, db, lambda: run(call()), [Reply("Paris it is", chunk_size=2)], settle=settle
    )
    assert_examples(captured, [text_answer("Paris it is")])


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
WEATHER = ToolCall("get_weather", '{"city": "Nice"}', "call_weather_1")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_tool_call_and_result(server: OpenAIServer, db: Path, settle: Any, stream: bool) -> None:
    def complete(messages: list[Any]) -> Any:
        options = ask(server, messages=messages, tools=[WEATHER_TOOL], stream=stream)
        response = litellm.completion(**options)
        if stream:
            response = litellm.stream_chunk_builder(list(response), messages=messages)
        return response

    def call() -> list[Any]:
        history: list[Any] = [{"role": "user", "content": "Weather in Nice?"}]
        asked = complete(history).choices[0].message
        history.append(asked.model_dump(exclude_none=True))
        for tool_call in asked.tool_calls:
            history.append(
                {"role": "tool", "tool_call_id": tool_call.id, "content": "sunny in Nice"}
            )
        history.append(complete(history).choices[0].message)
        return history

    replies = [Reply(None, tool_calls=[WEATHER]), Reply("Sunny in Nice.")]
    captured = capture_and_compare(server, db, call, replies, settle=settle)
    assert captured.result[-1].content == "Sunny in Nice."
    assert_examples(captured, [tool_answer(WEATHER), text_answer("Sunny in Nice.")])


class City(BaseModel):
    name: str
    country: str


def test_structured_output(server: OpenAIServer, db: Path, settle: Any) -> None:
    text = '{"name":"Paris","country":"France"}'
    captured = capture_and_compare(
        server,
        db,
        lambda: litellm.completion(**ask(server, response_format=City)),
        [Reply(text)],
        settle=settle,
    )
    assert City.model_validate_json(captured.result.choices[0].message.content).name == "Paris"
    assert_examples(captured, [text_answer(text)])


@RESPONSES_NOT_SEEN
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_responses_api(server: OpenAIServer, db: Path, settle: Any, stream: bool) -> None:
    def call() -> Any:
        response = litellm.responses(
            model="openai/gpt-4o-mini",
            input="Capital of France?",
            instructions="Answer in one word.",
            api_base=server.url,
            api_key="sk-test",
            stream=stream,
        )
        return list(response) if stream else response

    captured = capture_and_compare(server, db, call, [Reply("Paris", chunk_size=2)], settle=settle)
    assert_examples(captured, [text_answer("Paris")])
