"""Replay real recorded OpenAI API traffic: the stored example must equal the recorded request's
messages plus the recorded completion."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest

from finetuner_otel.testing import OpenAIServer

from .conftest import load_cassette, rows


def _sse_completion(body: str) -> dict[str, Any]:
    """Rebuild the assistant message from a recorded SSE body, independently of our buffers."""
    content, tool_calls = "", {}
    for line in body.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        for choice in json.loads(line[6:])["choices"]:
            if choice["index"] != 0:
                continue
            delta = choice["delta"]
            content += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                slot = tool_calls.setdefault(
                    call["index"],
                    {"id": None, "type": "function", "function": {"name": None, "arguments": ""}},
                )
                slot["id"] = call.get("id") or slot["id"]
                function = call.get("function") or {}
                slot["function"]["name"] = function.get("name") or slot["function"]["name"]
                slot["function"]["arguments"] += function.get("arguments") or ""
    message: dict[str, Any] = {"role": "assistant"}
    if content or not tool_calls:
        message["content"] = content
    if tool_calls:
        message["tool_calls"] = [tool_calls[i] for i in sorted(tool_calls)]
    return message


def _json_completion(body: str) -> dict[str, Any]:
    message = json.loads(body)["choices"][0]["message"]
    out: dict[str, Any] = {"role": "assistant"}
    if message.get("content") is not None or not message.get("tool_calls"):
        out["content"] = message.get("content")
    if message.get("tool_calls"):
        out["tool_calls"] = message["tool_calls"]
    return out


@pytest.mark.parametrize(
    "name",
    [
        "test_chat_completion_with_content",
        "test_chat_completion_tool_calls_with_content",
        "test_chat_completion_tool_calls_no_content",
        "test_chat_completion_multiple_choices",
        "test_chat_completion_extra_params",
        "test_chat_completion_streaming",
        "test_chat_completion_multiple_tools_streaming_with_content",
    ],
)
def test_replayed_call_is_stored_exactly(capture, server: OpenAIServer, name: str) -> None:
    request, reply = load_cassette(name)
    server.enqueue(reply)
    response = server.client().chat.completions.create(**request, dataset_name="recorded")
    if request.get("stream"):
        list(response)
        expected = _sse_completion(reply.body)  # type: ignore[arg-type]
    else:
        expected = _json_completion(reply.body)  # type: ignore[arg-type]
    [row] = rows(capture)
    assert row["status"] == "ok"
    assert row["messages"] == request["messages"]
    assert row["completion"] == expected
    if "tools" in request:
        assert row["tools"] == request["tools"]
    assert row["request_model"] == request["model"]
    assert row["response_model"].startswith(request["model"].split("-")[0])
    example = capture.open_store().get_dataset("recorded")[0].to_openai()
    assert example["messages"] == [*request["messages"], expected]


def test_replayed_async_stream(capture, server: OpenAIServer) -> None:
    request, reply = load_cassette("test_async_chat_completion_streaming")
    server.enqueue(reply)

    async def main() -> None:
        async with server.async_client() as client:
            stream = await client.chat.completions.create(**request)
            async for _ in stream:
                pass

    asyncio.run(main())
    [row] = rows(capture)
    assert row["completion"] == _sse_completion(reply.body)  # type: ignore[arg-type]
    assert row["input_tokens"] is not None


def test_replayed_404(capture, server: OpenAIServer) -> None:
    request, reply = load_cassette("test_chat_completion_404")
    server.enqueue(reply)
    with pytest.raises(openai.NotFoundError):
        server.client(max_retries=0).chat.completions.create(**request)
    [row] = rows(capture)
    assert row["status"] == "error" and row["error_type"] == "NotFoundError"
    assert row["messages"] == request["messages"]
