"""Sampling, and living beside the other OpenAI instrumentations (the contrib one, OpenLLMetry):
every call is stored exactly once, whatever else traces it, and whatever the app samples."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import wrapt
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased

import finetuner_otel
from finetuner_otel.testing import OpenAIServer, Reply

from .conftest import rows

QUESTION = [{"role": "user", "content": "Is this a duplicate?"}]


def _app_provider(sampler: Any = None) -> tuple[TracerProvider, InMemorySpanExporter]:
    exported = InMemorySpanExporter()
    provider = TracerProvider(**({"sampler": sampler} if sampler is not None else {}))
    provider.add_span_processor(SimpleSpanProcessor(exported))
    return provider, exported


@pytest.mark.parametrize(
    "sampler", [ALWAYS_OFF, ParentBased(ALWAYS_OFF), TraceIdRatioBased(0.01)], ids=str
)
def test_calls_the_app_samples_out_are_still_captured(
    db: Path, server: OpenAIServer, sampler: Any
) -> None:
    provider, exported = _app_provider(sampler)
    handle = finetuner_otel.instrument(db, tracer_provider=provider)
    try:
        client = server.client()
        tracer = provider.get_tracer("app")
        with tracer.start_as_current_span("request"):
            for i in range(5):
                server.enqueue(Reply(f"answer {i}"))
                client.chat.completions.create(model="m", messages=QUESTION, dataset_name="s")
        stored = rows(handle)
    finally:
        handle.shutdown()
    assert [r["completion"]["content"] for r in stored] == [f"answer {i}" for i in range(5)]
    # The app's own decision stands for its own exporters: they see only what it sampled.
    sampled = [s for s in exported.get_finished_spans() if s.name.startswith("chat")]
    assert len(sampled) <= 1


@pytest.fixture
def content_capture_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    monkeypatch.setenv("TRACELOOP_TRACE_CONTENT", "true")


def _other(kind: str) -> Any:
    if kind == "contrib":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    else:
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor
    return OpenAIInstrumentor()


def _sdk_classes() -> list[type]:
    import openai.resources.chat.completions as chat
    import openai.resources.completions as legacy
    import openai.resources.embeddings as embeddings
    import openai.resources.responses as responses

    return [
        chat.Completions,
        chat.AsyncCompletions,
        legacy.Completions,
        legacy.AsyncCompletions,
        embeddings.Embeddings,
        embeddings.AsyncEmbeddings,
        responses.Responses,
        responses.AsyncResponses,
    ]


@pytest.fixture(params=["contrib", "openllmetry"])
def other(request: pytest.FixtureRequest, content_capture_on: None) -> Iterator[Any]:
    before = {cls: dict(cls.__dict__) for cls in _sdk_classes()}
    instrumentor = _other(request.param)
    yield instrumentor
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    # OpenLLMetry's uninstrument() leaves its wrappers in place: put the SDK back by hand so
    # that no other test runs through them.
    for cls, attributes in before.items():
        for name, value in attributes.items():
            if cls.__dict__.get(name) is not value:
                setattr(cls, name, value)


@pytest.mark.parametrize("order", ["theirs first", "ours first"])
def test_beside_another_instrumentation_each_call_is_stored_once(
    db: Path, server: OpenAIServer, other: Any, order: str
) -> None:
    provider, exported = _app_provider()
    if order == "theirs first":
        other.instrument(tracer_provider=provider)
        handle = finetuner_otel.instrument(db, tracer_provider=provider)
    else:
        handle = finetuner_otel.instrument(db, tracer_provider=provider)
        other.instrument(tracer_provider=provider)
    try:
        client = server.client()
        server.enqueue(Reply("plain"), Reply("streamed"))
        client.chat.completions.create(model="m", messages=QUESTION, dataset_name="once")
        stream = client.chat.completions.create(
            model="m", messages=QUESTION, stream=True, dataset_name="once"
        )
        for _ in stream:
            pass
        stored = rows(handle)
    finally:
        handle.shutdown()
        other.uninstrument()
    # uninstrument() took out our wrapper, and only ours, wherever it was in the chain.
    assert not _our_wrappers(openai.resources.chat.completions.Completions.__dict__["create"])
    assert [(r["scope_name"], r["completion"]["content"]) for r in stored] == [
        ("finetuner_otel.instrumentation", "plain"),
        ("finetuner_otel.instrumentation", "streamed"),
    ]
    # Both instrumentations' spans still reach the app's own exporters.
    scopes = {s.instrumentation_scope.name for s in exported.get_finished_spans()}  # type: ignore[union-attr]
    assert "finetuner_otel.instrumentation" in scopes and len(scopes) >= 2


def _our_wrappers(function: Any) -> list[Any]:
    found = []
    while isinstance(function, wrapt.FunctionWrapper):
        if getattr(function._self_wrapper, "_finetuner_otel_wrapper", False):
            found.append(function)
        function = function.__wrapped__
    return found


def test_spans_of_another_instrumentation_alone_become_examples(
    db: Path, server: OpenAIServer, other: Any
) -> None:
    from finetuner_otel._setup import GenAISpanProcessor
    from finetuner_otel.exporters import DuckDBSpanExporter

    provider = TracerProvider()
    processor = GenAISpanProcessor(DuckDBSpanExporter(db))
    provider.add_span_processor(processor)
    other.instrument(tracer_provider=provider)
    # No current span: the contrib instrumentation, wrapped by ours in an earlier test, may have
    # left one of our spans current (it detaches its stream's context after our wrapper did).
    token = otel_context.attach(otel_context.Context())
    try:
        server.enqueue(Reply("their answer"))
        server.client().chat.completions.create(model="m", messages=QUESTION)
    finally:
        otel_context.detach(token)
        other.uninstrument()
    assert processor.force_flush()
    processor.shutdown()
    [row] = finetuner_otel.Store(db).sql("SELECT messages, completion, trainable FROM calls").rows
    assert json.loads(row[0]) == QUESTION
    assert json.loads(row[1])["content"] == "their answer"
    assert row[2] is True


def _framework_span(tracer: Any, response_id: str | None, text: str) -> None:
    """A framework's own record of a call (litellm's callback, the Agents SDK's), made in a
    trace of its own after the call returned, as those callbacks do."""
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "m",
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": text}]}]
        ),
        "gen_ai.output.messages": json.dumps(
            [
                {
                    "role": "assistant",
                    "parts": [{"type": "text", "content": "same"}],
                    "finish_reason": "stop",
                }
            ]
        ),
    }
    if response_id is not None:
        attributes["gen_ai.response.id"] = response_id
    with tracer.start_as_current_span(
        "litellm_request", context=otel_context.Context(), attributes=attributes
    ):
        pass


def test_a_framework_span_of_the_same_call_in_another_trace_is_stored_once(
    db: Path, server: OpenAIServer
) -> None:
    """Issue 19: one call, one row, whoever else traces it; but two calls with the same prompt
    at the same moment are two rows, theirs or ours."""
    import threading

    provider, _ = _app_provider()
    framework = provider.get_tracer("litellm")
    with finetuner_otel.instrument(db, tracer_provider=provider) as handle:
        client = server.client()
        answers: list[Any] = []

        def call() -> None:
            answers.append(client.chat.completions.create(model="m", messages=QUESTION))

        server.enqueue(Reply("same"), Reply("same"))
        threads = [threading.Thread(target=call) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for answer in answers:  # each call's own record by the framework, in a trace of its own
            _framework_span(framework, answer.id, QUESTION[0]["content"])
        # A framework-only call (not through the SDK we patch) twice, same prompt, same moment.
        _framework_span(framework, None, "framework only")
        _framework_span(framework, None, "framework only")
        _framework_span(framework, "chatcmpl-not-ours", "framework only, with an id")
        stored = rows(handle)
    ours = [r for r in stored if r["scope_name"] == "finetuner_otel.instrumentation"]
    theirs = [r for r in stored if r["scope_name"] == "litellm"]
    assert len(ours) == 2 and len({r["response_id"] for r in ours}) == 2
    assert sorted(r["messages"][0]["content"] for r in theirs) == [
        "framework only",
        "framework only",
        "framework only, with an id",
    ]
