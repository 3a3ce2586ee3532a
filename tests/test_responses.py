"""The Responses API and the SDK's other ways in (parse, stream helpers, raw responses): each
lands in the same calls table, in the same chat fine-tuning format, as chat completions."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import openai
import pydantic
import pytest

from finetuner_otel.testing import ErrorReply, OpenAIServer, Reply, ToolCall

from .conftest import load_cassette, rows

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
CHAT_WEATHER_TOOL = {
    "type": "function",
    "function": {k: v for k, v in WEATHER_TOOL.items() if k != "type"},
}


def test_create_with_instructions_and_string_input(capture, server: OpenAIServer) -> None:
    server.enqueue(Reply("Paris"))
    response = server.client().responses.create(
        model="gpt-4o-mini",
        instructions="Answer with a city.",
        input="Capital of France?",
        temperature=0,
        max_output_tokens=20,
        dataset_name="capitals",
    )
    assert response.output_text == "Paris"
    [row] = rows(capture)
    assert row["dataset"] == "capitals" and row["status"] == "ok" and row["trainable"]
    assert row["messages"] == [
        {"role": "system", "content": "Answer with a city."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert row["completion"] == {"role": "assistant", "content": "Paris"}
    assert row["request_model"] == "gpt-4o-mini" and row["response_id"] == response.id
    assert row["input_tokens"] == response.usage.input_tokens  # type: ignore[union-attr]
    assert row["finish_reasons"] == ["stop"]
    assert row["attributes"]["openai.api.type"] == "responses"
    assert row["attributes"]["gen_ai.request.max_tokens"] == 20
    assert "dataset_name" not in server.requests[-1].json


def test_item_history_with_tool_calls_becomes_chat_messages(capture, server: OpenAIServer) -> None:
    server.enqueue(Reply(None, tool_calls=[ToolCall("get_weather", '{"city":"Nice"}', "call_2")]))
    history: list[Any] = [
        {"role": "developer", "content": "Use the tools."},
        {
            "role": "user",
            "content": [{"type": "input_text", "text": "Weather in Lyon, then Nice?"}],
        },
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Lyon"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Lyon is sunny."}],
        },
        {"role": "user", "content": "And Nice?"},
    ]
    server.client().responses.create(model="m", input=history, tools=[WEATHER_TOOL])
    [row] = rows(capture)
    assert row["messages"] == [
        {"role": "developer", "content": "Use the tools."},
        {"role": "user", "content": "Weather in Lyon, then Nice?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Lyon"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "assistant", "content": "Lyon is sunny."},
        {"role": "user", "content": "And Nice?"},
    ]
    assert row["completion"] == {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Nice"}'},
            }
        ],
    }
    assert row["tools"] == [CHAT_WEATHER_TOOL]  # exported in the chat fine-tuning shape
    assert row["finish_reasons"] == ["tool_call"] and row["trainable"]


def test_stream_helper_records_the_final_response(capture, server: OpenAIServer) -> None:
    server.enqueue(Reply("a streamed answer", reasoning="Short and direct.", chunk_size=3))
    client = server.client()
    with client.responses.stream(model="m", input="q", dataset_name="s") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "a streamed answer" == final.output_text
    [row] = rows(capture)
    assert row["status"] == "ok" and row["dataset"] == "s"
    assert row["completion"] == {"role": "assistant", "content": "a streamed answer"}
    # The reasoning summary is kept in the semconv record, not in the training target.
    parts = row["output_messages"][0]["parts"]
    assert parts[0] == {"type": "reasoning", "content": "Short and direct."}


def test_async_stream_and_create(capture, server: OpenAIServer) -> None:
    server.enqueue(Reply("first"), Reply("second"))

    async def main() -> tuple[str, str]:
        async with server.async_client() as client:
            stream = await client.responses.create(model="m", input="one", stream=True)
            text = "".join([e.delta async for e in stream if e.type.endswith("text.delta")])
            whole = await client.responses.create(model="m", input="two")
            return text, whole.output_text

    assert asyncio.run(main()) == ("first", "second")
    got = {r["messages"][0]["content"]: r["completion"]["content"] for r in rows(capture)}
    assert got == {"one": "first", "two": "second"}


def test_cut_stream_is_incomplete_and_not_trainable(capture, server: OpenAIServer) -> None:
    server.enqueue(Reply("this will not finish", chunk_size=2, stream_cut_after=6))
    stream = server.client(max_retries=0).responses.create(model="m", input="q", stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    [row] = rows(capture)
    assert row["status"] in ("incomplete", "error") and not row["trainable"]


def test_truncated_response_is_not_a_training_example(capture, server: OpenAIServer) -> None:
    server.enqueue(Reply("cut off mid", finish_reason="length"))
    response = server.client().responses.create(model="m", input="q", max_output_tokens=3)
    assert response.status == "incomplete"
    [row] = rows(capture)
    assert row["finish_reasons"] == ["length"] and not row["trainable"]
    assert "token limit" in row["untrainable_reason"]


def test_api_error_propagates_unchanged(capture, server: OpenAIServer) -> None:
    server.enqueue(ErrorReply(400, "bad input", "invalid_request_error"))
    with pytest.raises(openai.BadRequestError, match="bad input"):
        server.client().responses.create(model="m", input="q")
    [row] = rows(capture)
    assert row["status"] == "error" and row["error_type"] == "BadRequestError"
    assert row["messages"] == [{"role": "user", "content": "q"}]


def test_one_dataset_mixes_both_apis(capture, server: OpenAIServer) -> None:
    server.enqueue(Reply("A"), Reply("B"))
    client = server.client()
    question = [{"role": "user", "content": "letter?"}]
    client.chat.completions.create(model="m", messages=question, dataset_name="mix")
    client.responses.create(model="m", input=question, dataset_name="mix")
    examples = [e.to_openai() for e in capture.open_store().get_dataset("mix")]
    assert examples == [
        {"messages": [*question, {"role": "assistant", "content": "A"}]},
        {"messages": [*question, {"role": "assistant", "content": "B"}]},
    ]


class Capital(pydantic.BaseModel):
    city: str
    country: str


def test_chat_parse_with_a_pydantic_model(capture, server: OpenAIServer) -> None:
    answer = '{"city":"Paris","country":"France"}'
    server.enqueue(Reply(answer))
    completion = server.client().chat.completions.parse(
        model="m",
        messages=[{"role": "user", "content": "Capital of France?"}],
        response_format=Capital,
    )
    assert completion.choices[0].message.parsed == Capital(city="Paris", country="France")
    [row] = rows(capture)
    assert row["completion"] == {"role": "assistant", "content": answer}
    assert row["request_options"]["response_format"]["type"] == "json_schema"
    assert row["attributes"]["gen_ai.output.type"] == "json"


def test_responses_parse_with_text_format(capture, server: OpenAIServer) -> None:
    answer = '{"city":"Rome","country":"Italy"}'
    server.enqueue(Reply(answer))
    response = server.client().responses.parse(
        model="m", input="Capital of Italy?", text_format=Capital
    )
    assert response.output_parsed == Capital(city="Rome", country="Italy")
    [row] = rows(capture)
    assert row["completion"] == {"role": "assistant", "content": answer}


def test_chat_stream_helper(capture, server: OpenAIServer) -> None:
    server.enqueue(Reply("helper text", chunk_size=2))
    with server.client().chat.completions.stream(
        model="m", messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "helper text"
    [row] = rows(capture)
    assert row["completion"] == {"role": "assistant", "content": "helper text"}
    assert row["status"] == "ok"


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_with_raw_response_is_recorded_and_untouched(
    capture, server: OpenAIServer, api: str
) -> None:
    server.enqueue(Reply("raw answer"))
    client = server.client()
    if api == "chat":
        raw = client.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "q"}]
        )
        parsed = raw.parse()
        assert parsed.choices[0].message.content == "raw answer"
    else:
        raw = client.responses.with_raw_response.create(model="m", input="q")
        parsed = raw.parse()
        assert parsed.output_text == "raw answer"
    assert raw.parse() is parsed  # the user's parse() still gets one object
    assert raw.headers["x-request-id"].startswith("req_")
    [row] = rows(capture)
    assert row["completion"] == {"role": "assistant", "content": "raw answer"}


def test_with_streaming_response_is_untouched(capture, server: OpenAIServer) -> None:
    server.enqueue(Reply("body read by the user"))
    client = server.client()
    with client.chat.completions.with_streaming_response.create(
        model="m", messages=[{"role": "user", "content": "q"}]
    ) as response:
        body = json.loads(response.read())
    assert body["choices"][0]["message"]["content"] == "body read by the user"
    [row] = rows(capture)
    # The body the user read is recorded from what the SDK read (issue 19): a whole example.
    assert row["status"] == "ok" and row["trainable"]
    assert row["messages"] == [{"role": "user", "content": "q"}]
    assert row["completion"] == {"role": "assistant", "content": "body read by the user"}


@pytest.mark.parametrize(
    "name",
    [
        "test_responses_create_basic",
        "test_responses_create_captures_tool_call_content",
        "test_responses_create_streaming_captures_content",
        "test_responses_create_reports_reasoning_tokens",
    ],
)
def test_replayed_responses_traffic(capture, server: OpenAIServer, name: str) -> None:
    request, reply = load_cassette(name)
    server.enqueue(reply)
    result = server.client().responses.create(**request)
    if request.get("stream"):
        events = list(result)  # type: ignore[call-overload]
        response = events[-1].response
    else:
        response = result
    [row] = rows(capture)
    assert row["status"] == "ok" and row["response_id"] == response.id
    expected_input = (
        [{"role": "user", "content": request["input"]}]
        if isinstance(request["input"], str)
        else request["input"]
    )
    system = (
        [{"role": "system", "content": request["instructions"]}]
        if "instructions" in request
        else []
    )
    assert row["messages"] == system + expected_input
    calls = [o for o in response.output if o.type == "function_call"]
    if calls:
        assert row["completion"]["tool_calls"] == [
            {
                "id": c.call_id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            }
            for c in calls
        ]
        assert row["tools"] == [
            {"type": "function", "function": {k: v for k, v in t.items() if k != "type"}}
            for t in request["tools"]
        ]
    else:
        assert row["completion"] == {"role": "assistant", "content": response.output_text}
    assert row["output_tokens"] == response.usage.output_tokens  # type: ignore[union-attr]


def test_replayed_responses_error(capture, server: OpenAIServer) -> None:
    request, reply = load_cassette("test_responses_create_api_error")
    server.enqueue(reply)
    with pytest.raises(openai.APIStatusError) as raised:
        server.client(max_retries=0).responses.create(**request)
    [row] = rows(capture)
    assert row["status"] == "error" and row["error_type"] == type(raised.value).__qualname__


def test_raw_response_wrappers_bound_before_instrument_are_recorded(
    db: Path, server: OpenAIServer
) -> None:
    import finetuner_otel

    client = server.client()
    raw_chat = client.chat.completions.with_raw_response  # bound now, before instrument()
    raw_responses = client.responses.with_raw_response
    streaming = client.chat.completions.with_streaming_response
    handle = finetuner_otel.instrument(db)
    try:
        with finetuner_otel.dataset("early"):
            server.enqueue(Reply("chat, raw"), Reply("responses, raw"), Reply("streamed body"))
            chat = raw_chat.create(model="m", messages=[{"role": "user", "content": "a"}])
            assert chat.parse().choices[0].message.content == "chat, raw"
            resp = raw_responses.create(model="m", input="b")
            assert resp.parse().output_text == "responses, raw"
            with streaming.create(
                model="m", messages=[{"role": "user", "content": "c"}]
            ) as response:
                assert json.loads(response.read())["choices"][0]["message"]["content"]
            # and a call the usual way is still recorded once, not twice
            server.enqueue(Reply("plain"))
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "d"}])
        stored = rows(handle)
    finally:
        handle.shutdown()
    assert [(r["dataset"], r["messages"][-1]["content"], r["trainable"]) for r in stored] == [
        ("early", "a", True),
        ("early", "b", True),
        ("early", "c", True),  # a body the user read: recorded as they read it
        ("early", "d", True),
    ]
    assert stored[0]["completion"]["content"] == "chat, raw"


def test_abandoned_responses_stream_is_recorded_when_collected(
    capture, server: OpenAIServer
) -> None:
    import gc

    server.enqueue(Reply("one two three four", chunk_size=2))
    stream = server.client().responses.create(model="m", input="q", stream=True)
    for event in stream:
        if event.type == "response.output_text.delta":
            break
    del stream, event
    gc.collect()
    [row] = rows(capture)
    assert row["status"] == "incomplete" and not row["trainable"]
    assert row["output_messages"][0]["parts"][0]["content"].startswith("on")
