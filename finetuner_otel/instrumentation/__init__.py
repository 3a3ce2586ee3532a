"""OpenTelemetry instrumentation of the ``openai`` SDK, made for fine-tuning datasets.

Every chat call (chat completions or the Responses API) becomes a CLIENT span named
``chat {model}`` that follows the OpenTelemetry GenAI semantic conventions, with the full content
(``gen_ai.input.messages``, ``gen_ai.output.messages``, ``gen_ai.tool.definitions``) and a
``finetuner.dataset`` attribute.

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
``finetuner_otel.dataset(...)`` scope (default ``default``). ``FINETUNER_MAX_CONTENT_SIZE``:
characters of one content part above which it is left out and the call marked not trainable.
``FINETUNER_REDACT``: built-in redactions (``email,phone,api_key``); ``instrument(redact=...)``
also takes a function of a text or regular expressions (see ``finetuner_otel._redact``). The
keywords ``default_dataset=``, ``max_content_size=`` and ``redact=`` win over the variables; they
are read once, into the ``CaptureOptions`` every wrapper of this instrumentation carries.

The ``dataset_name`` keyword is removed before the SDK sees it. Without this instrumentation the
SDK rejects it with ``TypeError``; code that must also run uninstrumented should use the
``finetuner_otel.dataset("name")`` context manager instead.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.trace import get_tracer
from wrapt import wrap_function_wrapper

from ..version import __version__
from ._apis import CHAT, RESPONSES, Api
from ._call import Tracers
from ._extensions import SHADOW_OF_KEY, Extensions, Owner, ShadowRequest
from ._options import CaptureOptions
from ._patch import (
    async_request,
    async_traced,
    stream_helper,
    sync_request,
    sync_traced,
    unwrap_ours,
)
from .package import _instruments

_CHAT_MODULE = "openai.resources.chat.completions"
_RESPONSES_MODULE = "openai.resources.responses"
# (module, class, method, api, async). ``parse`` posts the request itself rather than calling
# ``create``; the ``stream`` helpers and ``with_raw_response`` / ``with_streaming_response`` do
# call ``create`` (bound when first used: one bound before instrument() reaches the safety net
# below instead).
_PATCHES: list[tuple[str, str, str, Api, bool]] = [
    (_CHAT_MODULE, "Completions", "create", CHAT, False),
    (_CHAT_MODULE, "AsyncCompletions", "create", CHAT, True),
    (_CHAT_MODULE, "Completions", "parse", CHAT, False),
    (_CHAT_MODULE, "AsyncCompletions", "parse", CHAT, True),
    (_RESPONSES_MODULE, "Responses", "create", RESPONSES, False),
    (_RESPONSES_MODULE, "AsyncResponses", "create", RESPONSES, True),
    (_RESPONSES_MODULE, "Responses", "parse", RESPONSES, False),
    (_RESPONSES_MODULE, "AsyncResponses", "parse", RESPONSES, True),
]
# The stream helpers call the patched ``create``; they are wrapped only to accept dataset_name.
_HELPERS = [
    (_CHAT_MODULE, "Completions", "stream"),
    (_CHAT_MODULE, "AsyncCompletions", "stream"),
    (_RESPONSES_MODULE, "Responses", "stream"),
    (_RESPONSES_MODULE, "AsyncResponses", "stream"),
]
# The safety net: a request to a chat endpoint that reaches the client's ``request`` without
# going through the methods above (a ``with_raw_response`` bound before instrument(), a helper a
# newer SDK adds) is recorded there.
_CLIENT_MODULE = "openai._base_client"
_POSTS = [
    (_CLIENT_MODULE, "SyncAPIClient", "request"),
    (_CLIENT_MODULE, "AsyncAPIClient", "request"),
]
_SCHEMA_URL = "https://opentelemetry.io/schemas/1.37.0"

__all__ = ["SHADOW_OF_KEY", "Extensions", "OpenAIInstrumentor", "Owner", "ShadowRequest"]


class OpenAIInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Patches the OpenAI SDK's chat-completions and Responses methods (``create`` and
    ``parse``, sync and async, streaming or not). ``capture_options``: what the active
    instrumentation was given (None when not instrumented)."""

    capture_options: CaptureOptions | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        tracer = get_tracer(
            __name__, __version__, kwargs.get("tracer_provider"), schema_url=_SCHEMA_URL
        )
        capture_provider = kwargs.get("capture_tracer_provider")
        capture = (
            get_tracer(__name__, __version__, capture_provider, schema_url=_SCHEMA_URL)
            if capture_provider is not None
            else None
        )
        tracers = Tracers(tracer, capture)
        options = self.capture_options = CaptureOptions.load(kwargs)
        for module, owner, method, api, is_async in _PATCHES:
            factory = async_traced if is_async else sync_traced
            wrap_function_wrapper(module, f"{owner}.{method}", factory(tracers, api, options))
        for module, owner, method in _HELPERS:
            wrap_function_wrapper(module, f"{owner}.{method}", stream_helper)
        wrap_function_wrapper(
            _CLIENT_MODULE, "SyncAPIClient.request", sync_request(tracers, options)
        )
        wrap_function_wrapper(
            _CLIENT_MODULE, "AsyncAPIClient.request", async_request(tracers, options)
        )

    def _uninstrument(self, **kwargs: Any) -> None:
        import importlib

        for module, owner, method in [p[:3] for p in _PATCHES] + _HELPERS + _POSTS:
            unwrap_ours(getattr(importlib.import_module(module), owner), method)
        options, self.capture_options = self.capture_options, None
        if options is not None:
            options.extensions.close()
