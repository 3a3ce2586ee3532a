"""OpenTelemetry instrumentation of the ``openai`` SDK, made for fine-tuning datasets.

Every chat-completions call becomes a CLIENT span named ``chat {model}`` that follows the
OpenTelemetry GenAI semantic conventions, with the full content (``gen_ai.input.messages``,
``gen_ai.output.messages``, ``gen_ai.tool.definitions``) and a ``finetuner.dataset`` attribute.

Usage
-----
Most applications call :func:`finetuner_otel.instrument`, which also sets up the DuckDB store.
To wire it yourself::

    from finetuner_otel.instrumentation import OpenAIInstrumentor

    OpenAIInstrumentor().instrument(tracer_provider=provider, default_dataset="support")
    client.chat.completions.create(model=..., messages=..., dataset_name="search_classifier")

or, with no code change, ``opentelemetry-instrument --traces_exporter finetuner_duckdb python
app.py`` (this instrumentor is registered as ``finetuner_openai``, beside the contrib ``openai``).

Settings
--------
``FINETUNER_DATASET``: the dataset of calls with no ``dataset_name=`` keyword and no
``finetuner_otel.dataset(...)`` scope (default ``default``).

The ``dataset_name`` keyword is removed before the SDK sees it. Without this instrumentation the
SDK rejects it with ``TypeError``; code that must also run uninstrumented should use the
``finetuner_otel.dataset("name")`` context manager instead.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.trace import get_tracer
from wrapt import wrap_function_wrapper

from .._settings import Settings, check_dataset_name
from ..version import __version__
from ._patch import async_chat_create, chat_create
from .package import _instruments

_CHAT_MODULE = "openai.resources.chat.completions"
_SCHEMA_URL = "https://opentelemetry.io/schemas/1.37.0"

__all__ = ["OpenAIInstrumentor"]


class OpenAIInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Patches the OpenAI SDK's chat-completions methods (sync and async, streaming or not)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        tracer = get_tracer(
            __name__, __version__, kwargs.get("tracer_provider"), schema_url=_SCHEMA_URL
        )
        default = kwargs.get("default_dataset")
        default = (
            check_dataset_name(default, source="default_dataset")
            if default is not None
            else Settings.load().default_dataset
        )
        wrap_function_wrapper(_CHAT_MODULE, "Completions.create", chat_create(tracer, default))
        wrap_function_wrapper(
            _CHAT_MODULE, "AsyncCompletions.create", async_chat_create(tracer, default)
        )

    def _uninstrument(self, **kwargs: Any) -> None:
        import openai.resources.chat.completions as chat

        unwrap(chat.Completions, "create")
        unwrap(chat.AsyncCompletions, "create")
