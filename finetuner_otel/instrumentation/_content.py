"""Pure functions: OpenAI chat requests and responses to GenAI semantic-convention attributes.

Messages become the semconv "parts" format (``text``, ``tool_call``, ``tool_call_response``,
``uri``, ``blob``, ``file``) through the one parts builder (``finetuner_otel._parts``), encoded as
one JSON string per attribute and redacted on the way by the call's ``CaptureOptions``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .. import _semconv as sc
from .._fields import field, given
from .._parts import omitted_content, tool_definitions
from .._prompt import RenderedMessages
from ._options import CaptureOptions

# Request keywords with a semconv attribute of their own (scalar numbers).
_NUMERIC_PARAMS = {
    "temperature": sc.REQUEST_TEMPERATURE,
    "top_p": sc.REQUEST_TOP_P,
    "frequency_penalty": sc.REQUEST_FREQUENCY_PENALTY,
    "presence_penalty": sc.REQUEST_PRESENCE_PENALTY,
    "seed": sc.REQUEST_SEED,
}
# Keywords that never describe the model's behaviour (transport) or may carry credentials.
NOT_OPTIONS = frozenset(
    {
        "messages",
        "model",
        "tools",
        "stream",
        "stream_options",
        "extra_headers",
        "extra_query",
        "extra_body",
        "timeout",
        "user",
        "metadata",
        "store",
        *_NUMERIC_PARAMS,
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "n",
    }
)


# --- request ---------------------------------------------------------------------------


_server_cache: dict[int, tuple[Any, tuple[str | None, int | None, str]]] = {}


def _server(instance: Any) -> tuple[str | None, int | None, str]:
    """(host, port, provider name) of the client that makes this call.

    Cached by the identity of the client's base URL object (a client keeps its URL object; a
    new one, or a new client, is a new key), so the URL is not formatted and parsed per call.
    """
    client = getattr(instance, "_client", None)
    base_url = getattr(client, "base_url", None)
    cached = _server_cache.get(id(base_url))
    if cached is not None and cached[0] is base_url:
        return cached[1]
    host, port = _host_and_port(str(base_url)) if base_url is not None else (None, None)
    result = (host, port, provider_name(client, host))
    if len(_server_cache) > 256:
        _server_cache.clear()
    _server_cache[id(base_url)] = (base_url, result)
    return result


def _host_and_port(base_url: str) -> tuple[str | None, int | None]:
    parts = urlsplit(base_url)
    port = parts.port or (
        443 if parts.scheme == "https" else 80 if parts.scheme == "http" else None
    )
    return parts.hostname, port


# Providers that serve the OpenAI API at a host of their own: the semconv well-known provider
# names where there is one. Any other host (vLLM, Ollama, a proxy) speaks the OpenAI protocol,
# and is recorded as "openai" with its server.address.
_PROVIDER_HOSTS = {
    "api.groq.com": "groq",
    "api.mistral.ai": "mistral_ai",
    "api.deepseek.com": "deepseek",
    "api.perplexity.ai": "perplexity",
    "api.x.ai": "x_ai",
    "api.together.xyz": "together",
    "api.together.ai": "together",
    "api.fireworks.ai": "fireworks",
    "openrouter.ai": "openrouter",
    "generativelanguage.googleapis.com": "gcp.gemini",
}


def provider_name(client: Any, host: str | None) -> str:
    """The semconv provider name for the client that makes this call."""
    if type(client).__name__ in ("AzureOpenAI", "AsyncAzureOpenAI") or (
        host and host.endswith((".openai.azure.com", ".cognitiveservices.azure.com"))
    ):
        return "azure.ai.openai"
    if host:
        return _PROVIDER_HOSTS.get(host.lower(), "openai")
    return "openai"


def server_attributes(instance: Any) -> dict[str, Any]:
    """The attributes every call of this client starts with: operation, provider, server."""
    host, port, provider = _server(instance)
    attrs: dict[str, Any] = {sc.OPERATION_NAME: sc.OPERATION_CHAT, sc.PROVIDER_NAME: provider}
    if host:
        attrs[sc.SERVER_ADDRESS] = host
        if port:
            attrs[sc.SERVER_PORT] = port
    return attrs


def base_request_attributes(
    kwargs: Mapping[str, Any], instance: Any, api_type: str, numeric: Mapping[str, str]
) -> dict[str, Any]:
    """What every API's request gives: operation, provider, server, model, numeric params."""
    attrs = server_attributes(instance)
    attrs[sc.OPENAI_API_TYPE] = api_type
    model = kwargs.get("model")
    if given(model):
        attrs[sc.REQUEST_MODEL] = str(model)
    for key, attr in numeric.items():
        value = kwargs.get(key)
        if given(value) and isinstance(value, int | float) and not isinstance(value, bool):
            attrs[attr] = value
    return attrs


def request_attributes(
    kwargs: Mapping[str, Any], instance: Any, options: CaptureOptions
) -> dict[str, Any]:
    """Span attributes known before the call: model, parameters, server, and the input content."""
    attrs = base_request_attributes(kwargs, instance, "chat_completions", _NUMERIC_PARAMS)
    max_tokens = kwargs.get("max_completion_tokens")
    if not given(max_tokens):
        max_tokens = kwargs.get("max_tokens")
    if given(max_tokens) and isinstance(max_tokens, int):
        attrs[sc.REQUEST_MAX_TOKENS] = max_tokens
    n = kwargs.get("n")
    if given(n) and isinstance(n, int) and n != 1:
        attrs[sc.REQUEST_CHOICE_COUNT] = n
    stop: Any = kwargs.get("stop")
    if given(stop):
        stops = (stop,) if isinstance(stop, str) else tuple(stop)
        attrs[sc.REQUEST_STOP_SEQUENCES] = tuple(
            options.redact_text(s) if isinstance(s, str) else s for s in stops
        )
    response_format = kwargs.get("response_format")
    if given(response_format):
        kind = field(response_format, "type") if not isinstance(response_format, type) else None
        attrs[sc.OUTPUT_TYPE] = "text" if kind == "text" else "json"

    messages: Any = kwargs.get("messages")
    parts = options.parts
    converted = [parts.chat_message(m) for m in messages] if given(messages) else None
    return add_content(attrs, converted, kwargs, NOT_OPTIONS, options)


def add_content(
    attrs: dict[str, Any],
    messages: list[dict[str, Any]] | None,
    kwargs: Mapping[str, Any],
    not_options: frozenset[str],
    options: CaptureOptions,
) -> dict[str, Any]:
    """The request's content attributes (either API): the input messages (and whether a part
    was left out over the size cap), the tool definitions, the prompt it was rendered from, and
    the other request options; every text in them redacted."""
    if messages is not None:
        encoded = options.encode_messages(messages)
        attrs[sc.INPUT_MESSAGES] = encoded
        if omitted_content(encoded):
            attrs[sc.CONTENT_OMITTED] = True
    source = kwargs.get("messages", kwargs.get("input"))
    if type(source) is RenderedMessages:  # rendered from a Prompt: say which, and with what
        attrs[sc.PROMPT_NAME] = source.prompt.name
        attrs[sc.PROMPT_VERSION] = source.prompt.version
        attrs[sc.PROMPT_VARIABLES] = options.encode_value(source.variables)
    tools: Any = kwargs.get("tools")
    if given(tools):
        attrs[sc.TOOL_DEFINITIONS] = options.encode_value(tool_definitions(tools))
    extra = {k: v for k, v in kwargs.items() if k not in not_options and given(v)}
    if extra:
        attrs[sc.REQUEST_OPTIONS] = options.encode_value(extra)
    return attrs


# --- response -----------------------------------------------------------------------------


def response_identity(result: Any) -> dict[str, Any]:
    """``gen_ai.response.id`` and ``gen_ai.response.model`` of a whole result (either API)."""
    attrs: dict[str, Any] = {}
    response_id = field(result, "id")
    if response_id:
        attrs[sc.RESPONSE_ID] = response_id
    model = field(result, "model")
    if model:
        attrs[sc.RESPONSE_MODEL] = model
    return attrs


def is_completion(result: Any) -> bool:
    return hasattr(result, "choices")


def response_attributes(completion: Any, options: CaptureOptions) -> dict[str, Any]:
    """Span attributes from a ChatCompletion: ids, model, finish reasons, usage, output content."""
    attrs = response_identity(completion)
    choices = field(completion, "choices") or ()
    reasons = []
    messages = []
    parts = options.parts
    for choice in choices:
        reason = field(choice, "finish_reason")
        reasons.append(reason if isinstance(reason, str) else "")
        messages.append(parts.chat_output(field(choice, "message"), reason))
    if reasons:
        attrs[sc.RESPONSE_FINISH_REASONS] = tuple(reasons)
    attrs[sc.OUTPUT_MESSAGES] = options.encode_messages(messages)
    attrs.update(usage_attributes(field(completion, "usage")))
    return attrs


def usage_attributes(usage: Any) -> dict[str, Any]:
    if usage is None:
        return {}
    attrs = {}
    prompt = field(usage, "prompt_tokens")
    completion = field(usage, "completion_tokens")
    if isinstance(prompt, int):
        attrs[sc.USAGE_INPUT_TOKENS] = prompt
    if isinstance(completion, int):
        attrs[sc.USAGE_OUTPUT_TOKENS] = completion
    return attrs
