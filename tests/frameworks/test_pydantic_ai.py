"""pydantic-ai (pydantic-ai-slim[openai]) against the local server, captured by finetuner-otel.

Its tracing is OpenTelemetry: ``Agent(capabilities=[Instrumentation()])`` sends its spans (the
agent run, each model request as a GenAI "chat" span, the tools) to the app's TracerProvider,
the one instrument() joins; no logfire account or network is involved. Our span of each model
call is a child of pydantic-ai's: the same call twice in one trace, which must stay one row.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.capabilities import Instrumentation
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
from pydantic_ai.providers.openai import OpenAIProvider

from finetuner_otel.testing import OpenAIServer, Reply, ToolCall

from ._support import (
    assert_examples,
    capture_and_compare,
    framework_spans,
    plain,
    text_answer,
    tool_answer,
)


@pytest.fixture(params=[False, True], ids=["tracing-off", "tracing-on"])
def tracing(request: pytest.FixtureRequest, app_spans: InMemorySpanExporter) -> Iterator[bool]:
    yield request.param
    theirs = [s for s in framework_spans(app_spans.get_finished_spans())]
    if request.param:
        assert any(s.attributes.get("gen_ai.operation.name") == "chat" for s in theirs), theirs
    else:
        assert not theirs


def sdk(server: OpenAIServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.url, api_key="sk-test", max_retries=0)


def agent(client: openai.AsyncOpenAI, tracing: bool, api: str = "chat", **kwargs: Any) -> Agent:
    provider = OpenAIProvider(openai_client=client)
    kind = OpenAIResponsesModel if api == "responses" else OpenAIChatModel
    return Agent(
        kind("gpt-4o-mini", provider=provider),
        instructions="Answer in one word.",
        capabilities=[Instrumentation()] if tracing else [],
        **kwargs,
    )


def view(result: Any) -> Any:
    """What a run gives the app: its output and the whole message history."""
    return plain({"output": result.output, "messages": result.all_messages()})


APIS = pytest.mark.parametrize("api", ["chat", "responses"])


@APIS
def test_run(server: OpenAIServer, db: Path, tracing: bool, run: Any, api: str) -> None:
    async def call() -> Any:
        async with sdk(server) as client:
            return view(await agent(client, tracing, api).run("Capital of France?"))

    captured = capture_and_compare(server, db, lambda: run(call()), [Reply("Paris")], lambda r: r)
    assert captured.result["output"] == "Paris"
    assert_examples(captured, [text_answer("Paris")])


# run_sync runs on an event loop of its own: the client's connections left open on it cannot
# be closed from here, and Python says so when it collects them.
@pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)
def test_run_sync(server: OpenAIServer, db: Path, tracing: bool) -> None:
    def call() -> Any:
        return view(agent(sdk(server), tracing).run_sync("Capital of France?"))

    captured = capture_and_compare(server, db, call, [Reply("Paris")], lambda r: r)
    gc.collect()  # the leftovers, while their warnings are ignored
    assert_examples(captured, [text_answer("Paris")])


@APIS
def test_run_stream(server: OpenAIServer, db: Path, tracing: bool, run: Any, api: str) -> None:
    async def call() -> Any:
        async with sdk(server) as client:
            streaming = agent(client, tracing, api).run_stream("Capital of France?")
            async with streaming as result:
                deltas = [d async for d in result.stream_text(delta=True)]
                output = await result.get_output()
                messages = result.all_messages()
            return {"deltas": deltas, **plain({"output": output, "messages": messages})}

    replies = [Reply("Paris is the capital", chunk_size=3)]
    captured = capture_and_compare(server, db, lambda: run(call()), replies, lambda r: r)
    assert "".join(captured.result["deltas"]) == "Paris is the capital"
    assert_examples(captured, [text_answer("Paris is the capital")])


WEATHER = ToolCall("get_weather", '{"city":"Nice"}', "call_weather_1")


@APIS
def test_tool_call_and_result(
    server: OpenAIServer, db: Path, tracing: bool, run: Any, api: str
) -> None:
    async def call() -> Any:
        async with sdk(server) as client:
            weather = agent(client, tracing, api)

            @weather.tool_plain
            def get_weather(city: str) -> str:
                """The weather in a city."""
                return f"sunny in {city}"

            return view(await weather.run("Weather in Nice?"))

    replies = [Reply(None, tool_calls=[WEATHER]), Reply("Sunny in Nice.")]
    captured = capture_and_compare(server, db, lambda: run(call()), replies, lambda r: r)
    assert captured.result["output"] == "Sunny in Nice."
    assert_examples(captured, [tool_answer(WEATHER), text_answer("Sunny in Nice.")])


class City(BaseModel):
    name: str
    country: str


@APIS
def test_structured_output(
    server: OpenAIServer, db: Path, tracing: bool, run: Any, api: str
) -> None:
    """pydantic-ai's default output mode: the answer is a call of its final_result tool."""
    final = ToolCall("final_result", '{"name":"Paris","country":"France"}', "call_final_1")

    async def call() -> Any:
        async with sdk(server) as client:
            return view(await agent(client, tracing, api, output_type=City).run("Capital?"))

    captured = capture_and_compare(
        server, db, lambda: run(call()), [Reply(None, tool_calls=[final])], lambda r: r
    )
    assert captured.result["output"] == {"name": "Paris", "country": "France"}
    assert_examples(captured, [tool_answer(final)])
