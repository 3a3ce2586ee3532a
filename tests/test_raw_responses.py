"""Calls read through ``with_raw_response`` and ``with_streaming_response`` (as litellm, the
Agents SDK and LangChain with response headers do) are recorded whole when the user reads them,
and the user gets exactly what the SDK gives: the same types, the same content."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from finetuner_otel import _semconv as sc
from finetuner_otel.instrumentation import OpenAIInstrumentor
from finetuner_otel.testing import OpenAIServer, Reply

_PER_CALL = {sc.RESPONSE_ID}
ANSWER = "a whole answer, read raw"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    try:
        yield exporter
    finally:
        OpenAIInstrumentor().uninstrument()


def _one(spans: InMemorySpanExporter) -> dict[str, Any]:
    [span] = spans.get_finished_spans()
    spans.clear()
    return {k: v for k, v in (span.attributes or {}).items() if k not in _PER_CALL}


def _request(api: str) -> dict[str, Any]:
    if api == "chat":
        return {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    return {"model": "m", "input": "hi"}


def _resource(client: Any, api: str) -> Any:
    return client.chat.completions if api == "chat" else client.responses


def _plain(server: OpenAIServer, spans: InMemorySpanExporter, api: str) -> dict[str, Any]:
    """The attributes of the same call made plainly, streamed: what a raw read must match."""
    server.enqueue(Reply(ANSWER))
    for _ in _resource(server.client(), api).create(**_request(api), stream=True):
        pass
    return _one(spans)


def _drain(result: Any, stream: bool) -> None:
    if stream:
        for _ in result:
            pass


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("reader", ["parse", "read", "text"])
def test_sync_raw_responses_are_recorded_as_the_user_reads_them(
    server: OpenAIServer, spans: InMemorySpanExporter, api: str, stream: bool, reader: str
) -> None:
    plain = _plain(server, spans, api)
    resource = _resource(server.client(), api)
    server.enqueue(Reply(ANSWER))
    raw = resource.with_raw_response.create(**_request(api), stream=stream)
    if reader == "parse" or stream:  # a streamed LegacyAPIResponse is read with parse() only
        parsed = raw.parse()
        assert isinstance(parsed, openai.Stream if stream else openai.BaseModel)
        assert raw.parse() is parsed  # the SDK's cache still answers
        _drain(parsed, stream)
    else:  # LegacyAPIResponse reads its body through properties
        body = raw.content if reader == "read" else raw.text
        assert ANSWER.split()[0] in (body if isinstance(body, str) else body.decode())
    raw_attrs = _one(spans)
    server.enqueue(Reply(ANSWER))
    with resource.with_streaming_response.create(**_request(api), stream=stream) as response:
        assert isinstance(response, openai._response.APIResponse)
        if reader == "parse":
            _drain(response.parse(), stream)
        else:
            body = getattr(response, reader)()
            assert ANSWER.split()[0] in (body if isinstance(body, str) else body.decode())
    streaming_attrs = _one(spans)
    for attrs in (raw_attrs, streaming_attrs):
        assert json.loads(attrs[sc.OUTPUT_MESSAGES]) == json.loads(plain[sc.OUTPUT_MESSAGES])
        assert sc.CAPTURE_ERROR not in attrs and sc.INCOMPLETE not in attrs
        assert attrs[sc.INPUT_MESSAGES] == plain[sc.INPUT_MESSAGES]


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_async_raw_responses_are_recorded(
    server: OpenAIServer, spans: InMemorySpanExporter, api: str, stream: bool
) -> None:
    plain = _plain(server, spans, api)

    async def main() -> list[dict[str, Any]]:
        out = []
        async with server.async_client() as client:
            resource = _resource(client, api)
            server.enqueue(Reply(ANSWER))
            raw = await resource.with_raw_response.create(**_request(api), stream=stream)
            parsed = raw.parse()
            if stream:
                assert isinstance(parsed, openai.AsyncStream)
                async for _ in parsed:
                    pass
            out.append(_one(spans))
            server.enqueue(Reply(ANSWER))
            async with resource.with_streaming_response.create(
                **_request(api), stream=stream
            ) as response:
                parsed = await response.parse()
                if stream:
                    async for _ in parsed:
                        pass
            out.append(_one(spans))
        return out

    for attrs in asyncio.run(main()):
        assert json.loads(attrs[sc.OUTPUT_MESSAGES]) == json.loads(plain[sc.OUTPUT_MESSAGES])
        assert sc.CAPTURE_ERROR not in attrs


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_body_read_in_pieces_or_never_says_exactly_that(
    server: OpenAIServer, spans: InMemorySpanExporter, stream: bool
) -> None:
    resource = server.client().chat.completions
    server.enqueue(Reply(ANSWER))
    with resource.with_streaming_response.create(**_request("chat"), stream=stream) as response:
        lines = list(response.iter_lines())
    assert any(ANSWER.split()[0] in line for line in lines)  # the user's bytes are whole
    assert "read as raw bytes with .iter_lines()" in _one(spans)[sc.CAPTURE_ERROR]
    server.enqueue(Reply(ANSWER))
    with resource.with_streaming_response.create(**_request("chat"), stream=stream):
        pass
    assert "never read" in _one(spans)[sc.CAPTURE_ERROR]


def test_a_parsed_stream_outlives_its_raw_response(
    server: OpenAIServer, spans: InMemorySpanExporter
) -> None:
    """As litellm reads a stream: ``.parse()`` on a raw response, then only the stream is kept;
    the raw response is garbage collected before the stream is read."""
    import gc

    plain = _plain(server, spans, "chat")
    server.enqueue(Reply(ANSWER))
    raw = server.client().chat.completions.with_raw_response.create(**_request("chat"), stream=True)
    stream = raw.parse()
    del raw
    gc.collect()
    for _ in stream:
        pass
    attrs = _one(spans)
    assert sc.CAPTURE_ERROR not in attrs and sc.INCOMPLETE not in attrs
    assert json.loads(attrs[sc.OUTPUT_MESSAGES]) == json.loads(plain[sc.OUTPUT_MESSAGES])
