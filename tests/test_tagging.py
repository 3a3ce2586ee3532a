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
