"""Dataset tagging: keyword > dataset() scope > FINETUNER_DATASET > "default"."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

import finetuner_otel
from finetuner_otel.testing import OpenAIServer

from .conftest import rows

MESSAGES = [{"role": "user", "content": "hi"}]


def _datasets(handle) -> list[str]:
    return [r["dataset"] for r in rows(handle)]


def test_precedence(monkeypatch: pytest.MonkeyPatch, db, server: OpenAIServer) -> None:
    monkeypatch.setenv("FINETUNER_DATASET", "from_env")
    with finetuner_otel.instrument(db) as handle:
        client = server.client()
        client.chat.completions.create(model="m", messages=MESSAGES)
        with finetuner_otel.dataset("outer"):
            client.chat.completions.create(model="m", messages=MESSAGES)
            with finetuner_otel.dataset("inner"):
                client.chat.completions.create(model="m", messages=MESSAGES)
                client.chat.completions.create(model="m", messages=MESSAGES, dataset_name="kw")
            client.chat.completions.create(model="m", messages=MESSAGES)
        assert _datasets(handle) == ["from_env", "outer", "inner", "kw", "outer"]


def test_default_dataset_is_default(capture, server: OpenAIServer) -> None:
    server.client().chat.completions.create(model="m", messages=MESSAGES)
    assert _datasets(capture) == ["default"]


def test_decorator_on_sync_and_async_functions(capture, server: OpenAIServer) -> None:
    client = server.client()

    @finetuner_otel.dataset("decorated")
    def ask() -> None:
        client.chat.completions.create(model="m", messages=MESSAGES)

    @finetuner_otel.dataset("decorated_async")
    async def ask_async() -> None:
        async with server.async_client() as aclient:
            await aclient.chat.completions.create(model="m", messages=MESSAGES)

    ask()
    asyncio.run(ask_async())
    assert _datasets(capture) == ["decorated", "decorated_async"]


def test_scope_follows_asyncio_tasks_and_propagated_threads(capture, server: OpenAIServer) -> None:
    client = server.client()

    async def main() -> None:
        async with server.async_client() as aclient:
            with finetuner_otel.dataset("tasks"):
                await asyncio.gather(
                    *(
                        aclient.chat.completions.create(model="m", messages=MESSAGES)
                        for _ in range(3)
                    )
                )

    asyncio.run(main())
    with finetuner_otel.dataset("thread"):
        ctx = contextvars.copy_context()
    worker = threading.Thread(
        target=ctx.run,
        args=(client.chat.completions.create,),
        kwargs={"model": "m", "messages": MESSAGES},
    )
    worker.start()
    worker.join()
    assert _datasets(capture) == ["tasks"] * 3 + ["thread"]


def test_dataset_keyword_without_instrumentation_is_the_sdks_type_error(
    server: OpenAIServer,
) -> None:
    with pytest.raises(TypeError, match="dataset_name"):
        server.client().chat.completions.create(model="m", messages=MESSAGES, dataset_name="x")


def test_invalid_names(capture, server: OpenAIServer, caplog: pytest.LogCaptureFixture) -> None:
    for bad in ("", "   ", "a" * 201, "tab\tname", 42):
        with pytest.raises(finetuner_otel.ConfigurationError):
            finetuner_otel.dataset(bad)  # type: ignore[arg-type]
    # On the call itself a bad name never breaks the call: it is logged and the scope applies.
    with finetuner_otel.dataset("fallback"):
        result = server.client().chat.completions.create(
            model="m", messages=MESSAGES, dataset_name=123
        )
    assert result.choices[0].message.content
    assert _datasets(capture) == ["fallback"]
    assert "dataset_name must be a string" in caplog.text


def test_bad_environment_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, db) -> None:
    monkeypatch.setenv("FINETUNER_INGEST_INTERVAL", "soon")
    with pytest.raises(finetuner_otel.ConfigurationError, match="FINETUNER_INGEST_INTERVAL"):
        finetuner_otel.instrument(db)


def _framework_call(tracer, model: str, text: str, **extra: object) -> None:
    """A GenAI span as a framework's own tracing makes it (litellm's, pydantic-ai's, ...)."""
    import json

    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": text}]}]
        ),
        "gen_ai.output.messages": json.dumps(
            [
                {
                    "role": "assistant",
                    "parts": [{"type": "text", "content": "ok"}],
                    "finish_reason": "stop",
                }
            ]
        ),
        **extra,
    }
    with tracer.start_as_current_span(f"chat {model}", attributes=attributes):
        pass


def test_other_instrumentations_spans_get_the_dataset_as_ours_do(
    monkeypatch: pytest.MonkeyPatch, db
) -> None:
    """Issue 19: a span of another instrumentation lands in the dataset() scope it started in,
    else FINETUNER_DATASET; one that names its own finetuner.dataset keeps it. The app's own
    exporters see the spans as they were made, without our tags."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from finetuner_otel._context import purpose

    monkeypatch.setenv("FINETUNER_DATASET", "from_env")
    apps_own = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(apps_own))
    tracer = provider.get_tracer("some.framework")
    with finetuner_otel.instrument(db, tracer_provider=provider) as handle:
        _framework_call(tracer, "m", "unscoped")
        with finetuner_otel.dataset("scoped"):
            _framework_call(tracer, "m", "scoped")
            worker = threading.Thread(
                target=contextvars.copy_context().run, args=(_framework_call, tracer, "m", "thread")
            )
            worker.start()
            worker.join()
            _framework_call(tracer, "m", "named", **{"finetuner.dataset": "its_own"})
        with purpose("eval"):
            _framework_call(tracer, "m", "an eval call")
        stored = {r["messages"][0]["content"]: r for r in rows(handle)}
    assert {text: row["dataset"] for text, row in stored.items()} == {
        "unscoped": "from_env",
        "scoped": "scoped",
        "thread": "scoped",
        "named": "its_own",
        "an eval call": "from_env",
    }
    evaluated = stored["an eval call"]
    assert evaluated["attributes"]["finetuner.purpose"] == "eval" and not evaluated["trainable"]
    for span in apps_own.get_finished_spans():
        assert "finetuner.purpose" not in (span.attributes or {})
        if span.attributes.get("gen_ai.input.messages", "").find("named") < 0:
            assert "finetuner.dataset" not in (span.attributes or {})
