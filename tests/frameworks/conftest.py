"""tests/frameworks: each file imports a framework that only its own environment has.

``run.py`` makes the environments and sets ``FINETUNER_FRAMEWORK`` for the run; without it (the
main suite in .venv) these files are not collected.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import warnings
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

# No framework phones home: set before any test module imports one (litellm fetches its price
# table at import unless told not to).
os.environ.setdefault("LITELLM_TELEMETRY", "False")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DO_NOT_TRACK", "1")

_LOOPBACK = ("127.0.0.1", "::1", "localhost")

_APP_SPANS = InMemorySpanExporter()


@pytest.fixture(scope="session", autouse=True)
def _no_network() -> Iterator[None]:
    """Every connection a framework opens goes to the local server: any other fails loudly."""
    connect = socket.socket.connect

    def loopback_only(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOOPBACK:
            raise OSError(f"tests/frameworks reach no network: a connection to {address!r}")
        connect(self, address)

    socket.socket.connect = loopback_only  # type: ignore[method-assign]
    yield
    socket.socket.connect = connect  # type: ignore[method-assign]


@pytest.fixture(scope="session", autouse=True)
def _sync_loop_leftovers() -> Iterator[None]:
    """What the frameworks' own event loops leave open (Runner.run_sync's and run_sync's
    clients, litellm's logging worker), collected at the end without Python's warning about
    it failing the run; a leak during a test still fails that test."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line the runner shows per framework: model calls made, rows, trainable, duplicates."""
    from ._support import STATS

    if STATS.calls:
        terminalreporter.write_line(f"finetuner-otel: {STATS}")


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
