"""The OpenAI Agents SDK (openai-agents) against the local server, captured by finetuner-otel.

Its tracing is its own (not OpenTelemetry): "on" sends its traces to a processor that keeps them
in memory, in place of the default one that uploads them to OpenAI; "off" is
``set_tracing_disabled(True)``. Its default model speaks the Responses API and reads streams
through ``with_streaming_response``; the chat-completions model is tested too.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    TracingProcessor,
    function_tool,
    set_trace_processors,
    set_tracing_disabled,
)
from pydantic import BaseModel

from finetuner_otel.testing import OpenAIServer, Reply, ToolCall

from ._support import assert_examples, capture_and_compare, plain, text_answer, tool_answer

# Runner.run_sync runs each agent on an event loop of its own and closes it: the HTTP client's
# connections and auth generators still open then cannot be closed, and Python says so when it
# collects them. The async tests close their clients (async with) and keep these as errors.
SYNC_LOOP_LEFTOVERS = pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)


class Collector(TracingProcessor):
    """The Agents SDK's traces, kept here (nothing leaves the machine)."""

    def __init__(self) -> None:
        self.spans: list[Any] = []

    def on_trace_start(self, trace: Any) -> None:
        pass

    def on_trace_end(self, trace: Any) -> None:
        pass

    def on_span_start(self, span: Any) -> None:
        pass

    def on_span_end(self, span: Any) -> None:
        self.spans.append(span)

    def shutdown(self) -> None:
        pass

    def force_flush(self) -> None:
        pass


COLLECTOR = Collector()
set_trace_processors([COLLECTOR])  # in place of the exporter to OpenAI's servers


@pytest.fixture(params=[False, True], ids=["tracing-off", "tracing-on"])
def tracing(request: pytest.FixtureRequest) -> Iterator[bool]:
    set_tracing_disabled(not request.param)
    COLLECTOR.spans.clear()
    yield request.param
    kinds = {type(s.span_data).__name__ for s in COLLECTOR.spans}
    if request.param:
        assert {"AgentSpanData", "ResponseSpanData"} & kinds, f"no agent traced: {kinds}"
    else:
        assert not COLLECTOR.spans
    set_tracing_disabled(True)


def sdk(server: OpenAIServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.url, api_key="sk-test", max_retries=0)


def agent(client: openai.AsyncOpenAI, api: str, **kwargs: Any) -> Agent[Any]:
    if api == "responses":
        model: Any = OpenAIResponsesModel(model="gpt-4o-mini", openai_client=client)
    else:
        model = OpenAIChatCompletionsModel(model="gpt-4o-mini", openai_client=client)
    return Agent(name="geo", instructions="Answer in one word.", model=model, **kwargs)


def view(result: Any) -> Any:
    """What a run gives the app: its final output, the items it made, the raw model answers."""
    return plain(
        {
            "final_output": result.final_output,
            "items": [(type(i).__name__, i.raw_item) for i in result.new_items],
            "responses": [r.output for r in result.raw_responses],
        }
    )


APIS = pytest.mark.parametrize("api", ["responses", "chat"])


@APIS
@SYNC_LOOP_LEFTOVERS
def test_run_sync(server: OpenAIServer, db: Path, tracing: bool, api: str) -> None:
    def call() -> Any:
        return Runner.run_sync(agent(sdk(server), api), "Capital of France?")

    captured = capture_and_compare(server, db, call, [Reply("Paris")], view)
    gc.collect()  # the run loops' leftovers, while their warnings are ignored
    assert captured.result.final_output == "Paris"
    assert_examples(captured, [text_answer("Paris")])


@APIS
def test_run_async(server: OpenAIServer, db: Path, tracing: bool, run: Any, api: str) -> None:
    async def call() -> Any:
        async with sdk(server) as client:
            return view(await Runner.run(agent(client, api), "Capital of France?"))

    captured = capture_and_compare(server, db, lambda: run(call()), [Reply("Paris")], lambda r: r)
    assert captured.result["final_output"] == "Paris"
    assert_examples(captured, [text_answer("Paris")])


@APIS
def test_run_streamed(server: OpenAIServer, db: Path, tracing: bool, run: Any, api: str) -> None:
    async def streamed() -> Any:
        async with sdk(server) as client:
            result = Runner.run_streamed(agent(client, api), "Capital of France?")
            events = [e.type async for e in result.stream_events()]
            return {"events": events, **view(result)}

    captured = capture_and_compare(
        server, db, lambda: run(streamed()), [Reply("Paris is it", chunk_size=2)], lambda r: r
    )
    assert captured.result["final_output"] == "Paris is it"
    assert_examples(captured, [text_answer("Paris is it")])


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


WEATHER = ToolCall("get_weather", '{"city":"Nice"}', "call_weather_1")


@APIS
@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_tool_call_and_result(
    server: OpenAIServer, db: Path, tracing: bool, run: Any, api: str, streamed: bool
) -> None:
    async def call() -> Any:
        async with sdk(server) as client:
            weather = agent(client, api, tools=[get_weather])
            if not streamed:
                return view(await Runner.run(weather, "Weather in Nice?"))
            result = Runner.run_streamed(weather, "Weather in Nice?")
            _ = [e async for e in result.stream_events()]
            return view(result)

    replies = [Reply(None, tool_calls=[WEATHER]), Reply("Sunny in Nice.")]
    captured = capture_and_compare(server, db, lambda: run(call()), replies, lambda r: r)
    assert captured.result["final_output"] == "Sunny in Nice."
    assert_examples(captured, [tool_answer(WEATHER), text_answer("Sunny in Nice.")])


class City(BaseModel):
    name: str
    country: str


@APIS
def test_structured_output(
    server: OpenAIServer, db: Path, tracing: bool, run: Any, api: str
) -> None:
    text = '{"name":"Paris","country":"France"}'

    async def call() -> Any:
        async with sdk(server) as client:
            result = await Runner.run(agent(client, api, output_type=City), "Capital of France?")
            return view(result)

    captured = capture_and_compare(server, db, lambda: run(call()), [Reply(text)], lambda r: r)
    assert captured.result["final_output"] == {"name": "Paris", "country": "France"}
    assert_examples(captured, [text_answer(text)])
