"""A streamed and a whole answer with the same content give the same span attributes.

Spans are read straight from the SDK's ``InMemorySpanExporter``, with no store in between: this
is the layer of the instrumentation alone, for chat completions and the Responses API, for text,
tool calls, refusals, multimodal input, content over the size cap and redacted content. The
options (cap, redactor) travel with the instrumentation that was given them; the last tests
check that nothing else reads them (the import of a fine-tuning file).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import finetuner_otel
from finetuner_otel import _semconv as sc
from finetuner_otel.instrumentation import OpenAIInstrumentor
from finetuner_otel.testing import OpenAIServer, RawReply, Reply, ToolCall

# Attributes that differ between two calls whatever their content: the response's id.
_PER_CALL = {sc.RESPONSE_ID}
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5Erk"
    "Jggg=="
)


class Capture:
    def __init__(self, exporter: InMemorySpanExporter, server: OpenAIServer) -> None:
        self.exporter = exporter
        self.server = server

    def span(self) -> ReadableSpan:
        [span] = self.exporter.get_finished_spans()
        self.exporter.clear()
        return span

    def attributes(self) -> dict[str, Any]:
        attrs = dict(self.span().attributes or {})
        return {k: v for k, v in attrs.items() if k not in _PER_CALL}


@pytest.fixture
def instrumented(server: OpenAIServer, request: pytest.FixtureRequest) -> Iterator[Capture]:
    """Our instrumentation alone on an SDK provider with an in-memory exporter; its options come
    from the test's ``options`` marker (e.g. ``max_content_size=``, ``redact=``)."""
    marker = request.node.get_closest_marker("options")
    options = dict(marker.kwargs) if marker is not None else {}
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    OpenAIInstrumentor().instrument(tracer_provider=provider, **options)
    try:
        yield Capture(exporter, server)
    finally:
        OpenAIInstrumentor().uninstrument()
        provider.shutdown()


def _chat(capture: Capture, reply: Any, stream: bool, content: Any = "Hi") -> dict[str, Any]:
    capture.server.enqueue(reply)
    client = capture.server.client()
    messages = [{"role": "user", "content": content}]
    if stream:
        chunks = client.chat.completions.create(
            model="m", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        for _ in chunks:
            pass
    else:
        client.chat.completions.create(model="m", messages=messages)
    return capture.attributes()


def _responses(capture: Capture, reply: Any, stream: bool, content: Any = "Hi") -> dict[str, Any]:
    capture.server.enqueue(reply)
    client = capture.server.client()
    items = [{"role": "user", "content": content}]
    if stream:
        for _ in client.responses.create(model="m", input=items, stream=True):
            pass
    else:
        client.responses.create(model="m", input=items)
    return capture.attributes()


def _same(call: Any, capture: Capture, reply: Any, **kwargs: Any) -> dict[str, Any]:
    whole = call(capture, reply, False, **kwargs)
    streamed = call(capture, reply, True, **kwargs)
    assert streamed == whole
    return whole


def _output(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    return json.loads(attrs[sc.OUTPUT_MESSAGES])  # type: ignore[no-any-return]


TOOLS = [
    ToolCall("get_weather", '{"city": "Paris"}', id="call_1"),
    ToolCall("get_time", '{"zone": "CET"}', id="call_2"),
]


@pytest.mark.parametrize("call", [_chat, _responses], ids=["chat", "responses"])
def test_text(instrumented: Capture, call: Any) -> None:
    attrs = _same(
        call,
        instrumented,
        Reply("Hello there, how can I help?", prompt_tokens=3, completion_tokens=6),
    )
    [message] = _output(attrs)
    assert message["parts"] == [{"type": "text", "content": "Hello there, how can I help?"}]
    assert attrs[sc.USAGE_OUTPUT_TOKENS] == 6


@pytest.mark.parametrize("call", [_chat, _responses], ids=["chat", "responses"])
def test_tool_calls(instrumented: Capture, call: Any) -> None:
    attrs = _same(call, instrumented, Reply(None, tool_calls=TOOLS))
    [message] = _output(attrs)
    assert [p["arguments"] for p in message["parts"]] == ['{"city": "Paris"}', '{"zone": "CET"}']
    assert message["finish_reason"] == "tool_call"


@pytest.mark.parametrize("call", [_chat, _responses], ids=["chat", "responses"])
def test_multimodal_input(instrumented: Capture, call: Any) -> None:
    if call is _chat:
        content = [
            {"type": "text", "text": "What is it?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        ]
    else:
        content = [
            {"type": "input_text", "text": "What is it?"},
            {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
        ]
    attrs = _same(call, instrumented, Reply("a dot"), content=content)
    [user] = json.loads(attrs[sc.INPUT_MESSAGES])
    assert user["parts"][1] == {
        "type": "blob",
        "modality": "image",
        "mime_type": "image/png",
        "content": PNG,
    }


def _refusal_replies() -> tuple[RawReply, RawReply]:
    completion = {
        "id": "chatcmpl-r",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "logprobs": None,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "refusal": "I can't help with that.",
                },
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6},
    }
    base = {"id": "chatcmpl-r", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    deltas = [
        {"role": "assistant", "content": None, "refusal": ""},
        {"refusal": "I can't "},
        {"refusal": "help with that."},
    ]
    events = [
        {**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas
    ]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append({**base, "choices": [], "usage": completion["usage"]})
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return (
        RawReply(200, json.dumps(completion), {"content-type": "application/json"}),
        RawReply(200, body, {"content-type": "text/event-stream"}),
    )


def test_chat_refusal(instrumented: Capture) -> None:
    whole_reply, stream_reply = _refusal_replies()
    whole = _chat(instrumented, whole_reply, False)
    streamed = _chat(instrumented, stream_reply, True)
    assert streamed == whole
    [message] = _output(whole)
    assert message["parts"] == [{"type": "refusal", "content": "I can't help with that."}]


@pytest.mark.options(max_content_size=10)
@pytest.mark.parametrize("call", [_chat, _responses], ids=["chat", "responses"])
def test_an_answer_over_the_cap_is_left_out_streamed_or_not(
    instrumented: Capture, call: Any
) -> None:
    long = "a reply well over ten characters"
    attrs = _same(call, instrumented, Reply(long))
    [message] = _output(attrs)
    assert message["parts"][0]["content"] is None
    assert message["parts"][0][sc.OMITTED_MARKER] == {
        "field": "content",
        "size": len(long),
        "limit": 10,
    }
    assert long not in attrs[sc.OUTPUT_MESSAGES]


@pytest.mark.options(redact=["email"])
@pytest.mark.parametrize("call", [_chat, _responses], ids=["chat", "responses"])
def test_redacted_streamed_or_not(instrumented: Capture, call: Any) -> None:
    attrs = _same(
        call, instrumented, Reply("Write to ann@example.com today"), content="I am bob@example.org"
    )
    assert "example" not in json.dumps(attrs)
    [message] = _output(attrs)
    assert message["parts"][0]["content"] == "Write to [REDACTED:email] today"


def test_two_instrumentations_keep_their_own_options(server: OpenAIServer) -> None:
    """The cap is the instrumentation's value, not the process's: after one instrumentation
    with a cap is gone, the next one without it caps nothing."""
    for size, omitted in ((10, True), (None, False)):
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        OpenAIInstrumentor().instrument(tracer_provider=provider, max_content_size=size)
        try:
            server.enqueue(Reply("a reply well over ten characters"))
            server.client().chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
        finally:
            OpenAIInstrumentor().uninstrument()
        [span] = exporter.get_finished_spans()
        assert (sc.OMITTED_MARKER in str(span.attributes[sc.OUTPUT_MESSAGES])) is omitted


def test_import_ignores_the_capture_cap(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17's first bug: with FINETUNER_MAX_CONTENT_SIZE=10 and an instrumentation active,
    an imported example lost its user message (stored null, still trainable)."""
    monkeypatch.setenv("FINETUNER_MAX_CONTENT_SIZE", "10")
    example = {
        "messages": [
            {"role": "user", "content": "a question longer than ten"},
            {"role": "assistant", "content": "an answer longer than ten"},
        ]
    }
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(example) + "\n")
    handle = finetuner_otel.instrument(db)
    try:
        store = handle.open_store()
        store.import_jsonl(path, "imported")
        [exported] = store.get_dataset("imported").examples
    finally:
        handle.shutdown()
    assert exported.to_openai()["messages"] == example["messages"]
