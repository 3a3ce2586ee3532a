"""LangChain (langchain-openai's ChatOpenAI) against the local server, captured by finetuner-otel.

LangChain's tracing is its callbacks: "on" runs each call with a run collector (a tracer that
keeps the runs in memory; LangSmith is off, it would need the network). ChatOpenAI reads most
answers through ``with_raw_response``; ``include_response_headers=True`` makes streams do so too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from finetuner_otel.testing import OpenAIServer, Reply, ToolCall

from ._support import assert_examples, capture_and_compare, text_answer, tool_answer

QUESTION = [SystemMessage("Answer in one word."), HumanMessage("Capital of France?")]


@pytest.fixture(autouse=True)
def _no_langsmith(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGSMITH_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=[False, True], ids=["tracing-off", "tracing-on"])
def tracing(request: pytest.FixtureRequest) -> Any:
    """The config of each call: with LangChain's tracer, or none."""
    if not request.param:
        yield dict
        return
    collectors: list[RunCollectorCallbackHandler] = []

    def config() -> dict[str, Any]:
        collectors.append(RunCollectorCallbackHandler())
        return {"callbacks": [collectors[-1]]}

    yield config
    assert collectors and all(c.traced_runs for c in collectors), "LangChain traced no run"


def model(**kwargs: Any) -> ChatOpenAI:
    base_url = os.environ["OPENAI_BASE_URL"]  # the server's: LangChain reads OPENAI_API_BASE
    return ChatOpenAI(
        model="gpt-4o-mini", base_url=base_url, temperature=0, max_retries=0, **kwargs
    )


def test_invoke(server: OpenAIServer, db: Path, tracing: Any) -> None:
    captured = capture_and_compare(
        server, db, lambda: model().invoke(QUESTION, config=tracing()), [Reply("Paris")]
    )
    assert captured.result.content == "Paris"
    assert_examples(captured, [text_answer("Paris")])


def test_ainvoke(server: OpenAIServer, db: Path, tracing: Any, run: Any) -> None:
    captured = capture_and_compare(
        server, db, lambda: run(model().ainvoke(QUESTION, config=tracing())), [Reply("Paris")]
    )
    assert_examples(captured, [text_answer("Paris")])


@pytest.mark.parametrize("headers", [False, True], ids=["plain", "include_response_headers"])
def test_stream(server: OpenAIServer, db: Path, tracing: Any, headers: bool) -> None:
    def call() -> list[Any]:
        llm = model(include_response_headers=headers)
        return list(llm.stream(QUESTION, config=tracing()))

    captured = capture_and_compare(server, db, call, [Reply("Paris is the capital", chunk_size=3)])
    assert "".join(c.content for c in captured.result) == "Paris is the capital"
    assert_examples(captured, [text_answer("Paris is the capital")])


@pytest.mark.parametrize("headers", [False, True], ids=["plain", "include_response_headers"])
def test_astream(server: OpenAIServer, db: Path, tracing: Any, run: Any, headers: bool) -> None:
    async def chunks() -> list[Any]:
        llm = model(include_response_headers=headers)
        return [c async for c in llm.astream(QUESTION, config=tracing())]

    captured = capture_and_compare(
        server, db, lambda: run(chunks()), [Reply("Paris it is", chunk_size=2)]
    )
    assert_examples(captured, [text_answer("Paris it is")])


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


WEATHER = ToolCall("get_weather", '{"city": "Nice"}', "call_weather_1")


def test_tool_call_and_result(server: OpenAIServer, db: Path, tracing: Any) -> None:
    def call() -> Any:
        llm = model().bind_tools([get_weather])
        history: list[Any] = [HumanMessage("Weather in Nice?")]
        asked = llm.invoke(history, config=tracing())
        history.append(asked)
        for tool_call in asked.tool_calls:
            history.append(get_weather.invoke(tool_call))
        history.append(llm.invoke(history, config=tracing()))
        return history

    captured = capture_and_compare(
        server, db, call, [Reply(None, tool_calls=[WEATHER]), Reply("Sunny in Nice.")]
    )
    assert isinstance(captured.result[2], ToolMessage)
    assert captured.result[2].content == "sunny in Nice"
    assert_examples(captured, [tool_answer(WEATHER), text_answer("Sunny in Nice.")])


class City(BaseModel):
    name: str
    country: str


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_structured_output(server: OpenAIServer, db: Path, tracing: Any, method: str) -> None:
    text = '{"name": "Paris", "country": "France"}'
    if method == "json_schema":
        reply, answer = Reply(text), text_answer(text)
    else:
        call = ToolCall("City", text, "call_city_1")
        reply, answer = Reply(None, tool_calls=[call]), tool_answer(call)

    def run() -> Any:
        structured = model().with_structured_output(City, method=method)  # type: ignore[arg-type]
        return structured.invoke(QUESTION, config=tracing())

    captured = capture_and_compare(server, db, run, [reply])
    assert captured.result == City(name="Paris", country="France")
    assert_examples(captured, [answer])


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_responses_api(server: OpenAIServer, db: Path, tracing: Any, stream: bool) -> None:
    def call() -> Any:
        llm = model(use_responses_api=True)
        if stream:
            return list(llm.stream(QUESTION, config=tracing()))
        return llm.invoke(QUESTION, config=tracing())

    captured = capture_and_compare(server, db, call, [Reply("Paris", chunk_size=2)])
    assert_examples(captured, [text_answer("Paris")])
