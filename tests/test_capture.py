"""End to end: the real SDK over HTTP to the local server, spans through the real OTel SDK into
a real DuckDB file."""

from __future__ import annotations

import asyncio
import gc

import openai
import pytest

import finetuner_otel
from finetuner_otel.testing import OpenAIServer, Reply, ToolCall

from .conftest import rows

MESSAGES = [
    {"role": "system", "content": "Classify the search query."},
    {"role": "user", "content": "cheap flights to lisbon ✈️"},
]


def test_sync_call_stores_exact_example(capture, server: OpenAIServer) -> None:
    server.enqueue(Reply("travel", prompt_tokens=17, completion_tokens=1, model="gpt-4o-mini-2024"))
    client = server.client()
    result = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, temperature=0, dataset_name="search_classifier"
    )
    assert result.choices[0].message.content == "travel"
    assert "dataset_name" not in server.requests[-1].json  # never reaches the API

    [row] = rows(capture)
    assert row["dataset"] == "search_classifier"
    assert row["messages"] == MESSAGES
    assert row["completion"] == {"role": "assistant", "content": "travel"}
    assert row["request_model"] == "gpt-4o-mini"
    assert row["response_model"] == "gpt-4o-mini-2024"
    assert row["response_id"] == result.id
    assert (row["input_tokens"], row["output_tokens"]) == (17, 1)
    assert row["status"] == "ok" and row["trainable"] is True
    assert row["provider"] == "openai"
    assert row["finish_reasons"] == ["stop"]
    assert row["attributes"]["server.address"] == "127.0.0.1"
    assert row["attributes"]["gen_ai.request.temperature"] == 0
    assert row["input_messages"][1] == {
        "role": "user",
        "parts": [{"type": "text", "content": "cheap flights to lisbon ✈️"}],
    }
    assert row["output_messages"] == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "travel"}],
            "finish_reason": "stop",
        }
    ]


def test_async_call(capture, server: OpenAIServer) -> None:
    async def main() -> str | None:
        async with server.async_client() as client, finetuner_otel.dataset("async_ds"):
            result = await client.chat.completions.create(model="m", messages=MESSAGES)
        return result.choices[0].message.content

    content = asyncio.run(main())
    [row] = rows(capture)
    assert row["dataset"] == "async_ds"
    assert row["completion"] == {"role": "assistant", "content": content}
    assert row["messages"] == MESSAGES


@pytest.mark.parametrize("include_usage", [True, False])
def test_sync_stream_to_the_end(capture, server: OpenAIServer, include_usage: bool) -> None:
    server.enqueue(
        Reply("a streamed answer, in pieces", chunk_size=3, prompt_tokens=9, completion_tokens=5)
    )
    stream = server.client().chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        dataset_name="s",
        **({"stream_options": {"include_usage": True}} if include_usage else {}),
    )
    assert isinstance(stream, openai.Stream)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "a streamed answer, in pieces"
    [row] = rows(capture)
    assert row["status"] == "ok" and row["trainable"]
    assert row["completion"] == {"role": "assistant", "content": text}
    assert row["finish_reasons"] == ["stop"]
    expected_usage = (9, 5) if include_usage else (None, None)
    assert (row["input_tokens"], row["output_tokens"]) == expected_usage


def test_async_stream_to_the_end(capture, server: OpenAIServer) -> None:
    server.enqueue(Reply("async pieces", chunk_size=2))

    async def main() -> str:
        async with server.async_client() as client:
            stream = await client.chat.completions.create(
                model="m", messages=MESSAGES, stream=True, dataset_name="as"
            )
            assert isinstance(stream, openai.AsyncStream)
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert asyncio.run(main()) == "async pieces"
    [row] = rows(capture)
    assert row["completion"] == {"role": "assistant", "content": "async pieces"}
    assert row["status"] == "ok"


def test_stream_broken_off_early_is_incomplete(capture, server: OpenAIServer) -> None:
    server.enqueue(Reply("one two three four five six", chunk_size=2))
    stream = server.client().chat.completions.create(model="m", messages=MESSAGES, stream=True)
    for i, _ in enumerate(stream):
        if i == 2:
            break
    stream.close()
    [row] = rows(capture)
    assert row["status"] == "incomplete"
    assert row["trainable"] is False
    assert "before its last event" in row["untrainable_reason"]
    assert row["output_messages"][0]["finish_reason"] == "incomplete"


def test_abandoned_stream_is_recorded_when_collected(capture, server: OpenAIServer) -> None:
    server.enqueue(Reply("one two three four", chunk_size=2))
    stream = server.client().chat.completions.create(model="m", messages=MESSAGES, stream=True)
    next(iter(stream))
    del stream
    gc.collect()
    [row] = rows(capture)
    assert row["status"] == "incomplete"


def test_stream_as_context_manager(capture, server: OpenAIServer) -> None:
    server.enqueue(Reply("managed"), Reply("managed, left early"))
    client = server.client()
    with client.chat.completions.create(model="m", messages=MESSAGES, stream=True) as stream:
        assert "".join(c.choices[0].delta.content or "" for c in stream) == "managed"
    with client.chat.completions.create(model="m", messages=MESSAGES, stream=True) as stream:
        next(stream)
    first, second = rows(capture)
    assert (first["status"], second["status"]) == ("ok", "incomplete")
    assert first["completion"]["content"] == "managed"


def test_async_stream_context_manager_left_early(capture, server: OpenAIServer) -> None:
    server.enqueue(Reply("one two three four", chunk_size=2))

    async def main() -> None:
        async with server.async_client() as client:
            stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
            async with stream:
                await stream.__anext__()

    asyncio.run(main())
    [row] = rows(capture)
    assert row["status"] == "incomplete"


def test_stream_connection_dropped_mid_way(capture, server: OpenAIServer) -> None:
    server.enqueue(Reply("one two three four", chunk_size=2, stream_cut_after=3))
    client = server.client(max_retries=0)
    stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError) as raised:
        list(stream)
    [row] = rows(capture)
    assert row["status"] == "error"
    assert row["error_type"] == type(raised.value).__qualname__
    assert row["trainable"] is False


def test_tool_calls_round_trip(capture, server: OpenAIServer) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
    ]
    server.enqueue(Reply(None, tool_calls=[ToolCall("get_weather", '{"city":  "Lyon"}', "call_2")]))
    server.client().chat.completions.create(
        model="m", messages=history, tools=tools, tool_choice="auto", dataset_name="tools"
    )
    server.enqueue(
        Reply(
            None, tool_calls=[ToolCall("get_weather", '{"city": "Nice"}', "call_3")], chunk_size=5
        )
    )
    list(
        server.client().chat.completions.create(
            model="m", messages=history, tools=tools, stream=True, dataset_name="tools"
        )
    )
    plain, streamed = rows(capture)
    expected_history = [
        history[0],
        {k: v for k, v in history[1].items() if k != "content"},
        history[2],
    ]
    for row in (plain, streamed):
        assert row["tools"] == tools
        assert row["messages"] == expected_history
        assert row["trainable"]
        assert row["finish_reasons"] == ["tool_calls"]
    assert plain["completion"] == {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":  "Lyon"}'},
            }
        ],
    }
    assert streamed["completion"]["tool_calls"][0]["function"]["arguments"] == '{"city": "Nice"}'
    assert plain["request_options"] == {"tool_choice": "auto"}
    example = capture.open_store().get_dataset("tools")[0].to_openai()
    assert example == {"messages": [*expected_history, plain["completion"]], "tools": tools}


def test_multiple_choices_keep_every_choice(capture, server: OpenAIServer) -> None:
    server.enqueue(Reply(["first", "second"]))
    server.client().chat.completions.create(model="m", messages=MESSAGES, n=2)
    [row] = rows(capture)
    assert [m["parts"][0]["content"] for m in row["output_messages"]] == ["first", "second"]
    assert row["completion"]["content"] == "first"  # the documented choice: the first
    assert row["attributes"]["gen_ai.request.choice.count"] == 2


def test_cut_off_completion_is_not_trainable(capture, server: OpenAIServer) -> None:
    server.enqueue(Reply("partial", finish_reason="length"))
    server.client().chat.completions.create(model="m", messages=MESSAGES, max_tokens=1)
    [row] = rows(capture)
    assert row["trainable"] is False and "finish_reason=length" in row["untrainable_reason"]


def test_messages_from_a_generator_and_sdk_objects(capture, server: OpenAIServer) -> None:
    client = server.client()
    first = client.chat.completions.create(model="m", messages=MESSAGES)
    history = (m for m in [*MESSAGES, first.choices[0].message, {"role": "user", "content": "ok"}])
    client.chat.completions.create(model="m", messages=history)
    sent = server.requests[-1].json["messages"]
    assert len(sent) == 4  # the SDK still received every message
    _, second = rows(capture)
    assert second["messages"][2] == {
        "role": "assistant",
        "content": first.choices[0].message.content,
    }
