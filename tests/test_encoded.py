"""Our spans' message texts are not parsed back by the exporter (``finetuner_otel._encoded``):
whatever the call, the row is the very line that parsing them gives, and only the very string
our instrumentation encoded, never an equal one, stands for its value."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from finetuner_otel import _encoded
from finetuner_otel import _semconv as sc
from finetuner_otel.exporters._spans import span_to_line
from finetuner_otel.instrumentation import OpenAIInstrumentor
from finetuner_otel.testing import OpenAIServer, Reply, ToolCall

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
REQUESTS = [
    [{"role": "user", "content": "Classify: the box was damaged."}],
    [
        {"role": "system", "content": "Two\nlines, a tab\t and ünïcode ✓"},
        {"role": "user", "content": "hi"},
    ],
    [{"role": "user", "content": "Is NaN a number? And Infinity?"}],  # parsed: json writes NaN
    [{"role": "user", "content": [{"type": "text", "text": "what is this?"}, IMAGE]}],
    [{"role": "user", "content": ({"type": "text", "text": "a tuple of parts"},)}],
    [{"role": "user", "content": "an astral character 😀 and a quote \" in it"}],
    [{"role": "user", "content": "call the tool"}],
]
REPLIES = [
    Reply("shipping_damage"),
    Reply("hello"),
    Reply("NaN is a float"),
    Reply("a cat"),
    Reply("ok"),
    Reply("ok"),
    Reply(None, tool_calls=[ToolCall("lookup", '{"q": 1}', "call_1")]),
]


@pytest.fixture
def spans() -> Iterator[list[ReadableSpan]]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    _encoded.enable()
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    try:
        with OpenAIServer() as server:
            server.enqueue(*REPLIES)
            client = server.client()
            for messages in REQUESTS:
                client.chat.completions.create(model="m", messages=messages, temperature=0)
            with client.chat.completions.create(
                model="m", messages=REQUESTS[0], stream=True
            ) as stream:
                for _ in stream:
                    pass
        yield list(memory.get_finished_spans())
    finally:
        OpenAIInstrumentor().uninstrument()


def test_a_row_is_the_same_whether_its_texts_are_parsed_or_not(spans: list[ReadableSpan]) -> None:
    assert len(spans) == len(REQUESTS) + 1
    kept = 0
    for span in spans:
        texts = [span.attributes[k] for k in (sc.INPUT_MESSAGES, sc.OUTPUT_MESSAGES)]
        kept += sum(id(t) in _encoded._kept for t in texts)
        first = span_to_line(span)  # takes the kept values: no parse of those texts
        assert not any(id(t) in _encoded._kept for t in texts)
        assert first == span_to_line(span)  # nothing kept now: every text parsed
        json.loads(first)
    assert kept == 2 * len(spans)  # every text was kept (the NaN ones are parsed all the same)


def test_an_equal_text_is_parsed_not_taken_for_the_one_kept() -> None:
    _encoded.enable()
    value = [{"role": "user", "parts": [{"type": "text", "content": "kept"}]}]
    text = json.dumps(value)
    _encoded.remember(text, value)
    other = text[:1] + text[1:]  # equal, and a string object of its own
    assert other == text and other is not text
    assert _encoded.take(other) == (False, None)
    assert _encoded.take(text) == (True, value)
    assert _encoded.take(text) == (False, None)  # taken once


def test_what_is_kept_is_bounded() -> None:
    _encoded.enable()
    texts = [f'["{i}"]' for i in range(_encoded.MAX_KEPT * 2)]
    for text in texts:
        _encoded.remember(text, [str(text)])
    assert len(_encoded._kept) <= _encoded.MAX_KEPT
    assert _encoded.take(texts[0]) == (False, None)  # the oldest went first
    assert _encoded.take(texts[-1])[0]
