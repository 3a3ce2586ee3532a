"""tests/frameworks: each file imports a framework that only its own environment has.

``run.py`` makes the environments and sets ``FINETUNER_FRAMEWORK`` for the run; without it (the
main suite in .venv) these files are not collected.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import finetuner_otel
from finetuner_otel.testing import OpenAIServer

T = TypeVar("T")

collect_ignore_glob = [] if os.environ.get("FINETUNER_FRAMEWORK") else ["test_*.py"]

_APP_SPANS = InMemorySpanExporter()


@pytest.fixture(scope="session", autouse=True)
def _app_tracer_provider() -> None:
    """The app's own OpenTelemetry set-up, as a traced app has it: an SDK provider with an
    exporter of its own. instrument() adds the store beside it, so a framework's own spans (its
    tracing on) reach the store too, and must not become second rows."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_APP_SPANS))
    trace.set_tracer_provider(provider)


@pytest.fixture
def app_spans() -> InMemorySpanExporter:
    """What the app's own exporter received during the test."""
    _APP_SPANS.clear()
    return _APP_SPANS


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    """The local OpenAI-compatible server; the frameworks find it through the environment."""
    with OpenAIServer() as srv:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
        yield srv


@pytest.fixture(scope="session")
def run() -> Iterator[Callable[[Coroutine[Any, Any, T]], T]]:
    """``run(coroutine)`` on one event loop for the whole run, as an app has one: frameworks
    cache async HTTP clients (LangChain per base URL, litellm per process) bound to the loop
    they first ran on, and a second ``asyncio.run`` would find them on a closed one."""
    loop = asyncio.new_event_loop()
    yield loop.run_until_complete
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store" / "finetuner.duckdb"


@pytest.fixture(autouse=True)
def _nothing_instrumented() -> Iterator[None]:
    """Each test starts and ends with the SDK bare, so its first call is the control run."""
    _uninstrument()
    yield
    _uninstrument()


def _uninstrument() -> None:
    if finetuner_otel.OpenAIInstrumentor().is_instrumented_by_opentelemetry:
        finetuner_otel.uninstrument()
