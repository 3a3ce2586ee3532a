"""The user's call behaves exactly as without us: same results, same errors, whatever fails inside
the instrumentation."""

from __future__ import annotations

import openai
import pytest
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

import finetuner_otel
from finetuner_otel.instrumentation import _apis
from finetuner_otel.testing import ErrorReply, OpenAIServer, Reply

from .conftest import rows

MESSAGES = [{"role": "user", "content": "hi"}]


def _call(client: openai.OpenAI, **kwargs):
    return client.chat.completions.create(model="m", messages=MESSAGES, **kwargs)


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, openai.BadRequestError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
    ],
)
def test_http_errors_raise_exactly_as_without_us(
    db, server: OpenAIServer, status: int, error_class: type[Exception]
) -> None:
    client = server.client(max_retries=0)
    reply = ErrorReply(status, f"scripted {status}", type="invalid_request_error", code="c")
    server.enqueue(reply)
    with pytest.raises(error_class) as bare:
        _call(client)
    with finetuner_otel.instrument(db) as handle:
        server.enqueue(reply)
        with pytest.raises(error_class) as ours:
            _call(client)
        [row] = rows(handle)
    assert type(ours.value) is type(bare.value)
    assert str(ours.value) == str(bare.value)
    assert ours.value.status_code == status
    assert row["status"] == "error"
    assert row["error_type"] == error_class.__qualname__
    assert row["attributes"]["http.response.status_code"] == status
    assert f"scripted {status}" in row["error_message"]
    assert row["trainable"] is False


def test_connection_error_propagates_and_is_recorded(capture) -> None:
    client = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.APIConnectionError):
        _call(client)
    [row] = rows(capture)
    assert row["status"] == "error" and row["error_type"] == "APIConnectionError"


def test_failing_request_capture_leaves_the_call_untouched(
    capture,
    db,
    server: OpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("injected fault")

    monkeypatch.setattr(_apis.CHAT, "request_attributes", broken)
    result = _call(server.client(), dataset_name="x")
    assert result.choices[0].message.content == "You said: hi"
    assert "dataset_name" not in server.requests[-1].json
    assert "internal error in the request capture" in caplog.text
    assert capture.flush()
    assert not db.exists()  # nothing half-recorded


def test_failing_response_capture_ends_the_span_as_untrainable(
    capture, server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("injected fault")

    monkeypatch.setattr(_apis.CHAT, "response_attributes", broken)
    result = _call(server.client())
    assert result.choices[0].message.content == "You said: hi"
    [row] = rows(capture)
    assert row["trainable"] is False and "capture failed" in row["untrainable_reason"]


def test_failing_stream_capture_keeps_the_stream_whole(
    capture, server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self, chunk):
        raise RuntimeError("injected fault")

    monkeypatch.setattr("finetuner_otel.instrumentation._buffers.ChatStreamBuffer.add", broken)
    server.enqueue(Reply("every chunk still arrives", chunk_size=3))
    stream = _call(server.client(), stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == "every chunk still arrives"
    [row] = rows(capture)
    assert row["trainable"] is False


class _ExplodingProcessor(SpanProcessor):
    def on_start(self, span, parent_context=None) -> None:
        raise RuntimeError("a broken third-party span processor")


def test_a_broken_span_processor_does_not_break_the_call(db, server: OpenAIServer) -> None:
    provider = TracerProvider()
    provider.add_span_processor(_ExplodingProcessor())
    with finetuner_otel.instrument(db, tracer_provider=provider):
        result = _call(server.client())
    assert result.choices[0].message.content == "You said: hi"
    provider.shutdown()


def test_results_are_identical_to_the_bare_sdk(db, server: OpenAIServer) -> None:
    reply = Reply("same", prompt_tokens=3, completion_tokens=1, model="fixed")
    client = server.client()
    server.enqueue(reply, reply)
    bare = _call(client).model_dump(exclude={"id", "created"})
    bare_stream = [c.model_dump(exclude={"id", "created"}) for c in _call(client, stream=True)]
    with finetuner_otel.instrument(db):
        server.enqueue(reply, reply)
        ours = _call(client).model_dump(exclude={"id", "created"})
        ours_stream = [c.model_dump(exclude={"id", "created"}) for c in _call(client, stream=True)]
    assert ours == bare
    assert ours_stream == bare_stream


def test_instrument_is_idempotent_and_uninstrument_restores_the_sdk(db) -> None:
    import openai.resources.responses as responses

    chat = openai.resources.chat.completions
    classes = [chat.Completions, chat.AsyncCompletions, responses.Responses]
    classes.append(responses.AsyncResponses)

    def snapshot() -> dict[tuple[type, str], object]:
        return {(cls, name): value for cls in classes for name, value in vars(cls).items()}

    original = snapshot()
    first = finetuner_otel.instrument(db)
    assert finetuner_otel.instrument(db) is first
    patched = {key for key, value in snapshot().items() if value is not original[key]}
    assert {name for _, name in patched} == {"create", "parse", "stream"}
    assert len(patched) == 12
    finetuner_otel.uninstrument()
    assert snapshot() == original and all(v is original[k] for k, v in snapshot().items())
    again = finetuner_otel.instrument(db)
    assert again is not first
    again.shutdown()
    assert all(v is original[k] for k, v in snapshot().items())


def test_adds_to_an_existing_sdk_provider(db, server: OpenAIServer) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with finetuner_otel.instrument(db, tracer_provider=provider) as handle:
        assert handle.tracer_provider is provider
        _call(server.client(), dataset_name="shared")
        [row] = rows(handle)
    [span] = memory.get_finished_spans()  # the app's own exporter sees our span too
    assert span.name == "chat m"
    assert span.attributes["finetuner.dataset"] == "shared"
    assert row["span_id"] == format(span.context.span_id, "016x")
    provider.shutdown()


def test_suppressed_instrumentation_records_nothing(capture, db, server: OpenAIServer) -> None:
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with suppress_instrumentation():
        result = _call(server.client(), dataset_name="hidden")
    assert result.choices
    assert "dataset_name" not in server.requests[-1].json
    assert capture.flush()
    assert not db.exists()


class _Items:
    """A one-shot iterator that is not a generator."""

    def __init__(self, items: list[dict[str, str]]) -> None:
        self._items = iter(items)

    def __iter__(self) -> _Items:
        return self

    def __next__(self) -> dict[str, str]:
        return next(self._items)


def _outcome(server: OpenAIServer, api: str, kind: str) -> tuple[str, str, bytes | None]:
    """What the call did: its result type (or error type and message), and the body sent."""
    items = [{"role": "user", "content": "hi"}]
    value = (x for x in items) if kind == "generator" else _Items(items)
    client = server.client(max_retries=0)
    before = len(server.requests)
    server.enqueue(Reply("hello"))
    try:
        if api == "chat":
            result = client.chat.completions.create(model="m", messages=value)
        else:
            result = client.responses.create(model="m", input=value)
        outcome = (type(result).__name__, "")
    except Exception as exc:  # the bare SDK's own error: ours must be the same
        outcome = (type(exc).__name__, str(exc))
    sent = server.requests[-1].body if len(server.requests) > before else None
    server._queue.clear()
    return outcome[0], outcome[1], sent


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("kind", ["generator", "iterator"])
def test_one_shot_iterators_behave_exactly_as_without_us(
    db, server: OpenAIServer, api: str, kind: str
) -> None:
    """Issue 19: responses.create(input=<a generator>) raises TypeError in the bare SDK; it
    must with us too (we used to hand the SDK a list), and chat must still read it."""
    bare = _outcome(server, api, kind)
    with finetuner_otel.instrument(db) as handle:
        ours = _outcome(server, api, kind)
        stored = rows(handle)
    assert ours == bare
    if bare[2] is not None:  # the SDK sent it: we recorded what it sent
        [row] = stored
        assert row["messages"] == [{"role": "user", "content": "hi"}]
