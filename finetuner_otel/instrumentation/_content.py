"""Pure functions: OpenAI chat requests and responses to GenAI semantic-convention attributes.

Messages become the semconv "parts" format (``text``, ``tool_call``, ``tool_call_response``,
``uri``, ``blob``, ``file``), encoded as one JSON string per attribute. Tool-call arguments are
kept as the exact string the SDK sent or received, so a stored example is byte-for-byte the call.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import pydantic

from .. import _semconv as sc
from .._json import dumps
from .._prompt import RenderedMessages
from .._redact import Redactor
from .._settings import DEFAULT_MAX_CONTENT_SIZE

try:  # sentinels for "argument not given"; Omit appeared in later SDK releases
    from openai import NotGiven as _NotGiven
except ImportError:  # pragma: no cover - every supported SDK has it
    _NotGiven = ()  # type: ignore[assignment,misc]
try:
    from openai import Omit as _Omit
except ImportError:  # pragma: no cover - older SDKs
    _Omit = ()  # type: ignore[assignment,misc]
_SENTINELS: tuple[type, ...] = tuple(t for t in (_NotGiven, _Omit) if isinstance(t, type))

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
_DATA_URL = re.compile(r"^data:(?P<mime>[^;,]*)(?P<b64>;base64)?,", re.IGNORECASE)
_FINISH_REASONS = {"tool_calls": "tool_call", "function_call": "tool_call"}


def semconv_finish_reason(reason: str) -> str:
    """OpenAI's finish reason in the semconv vocabulary (``tool_calls`` becomes ``tool_call``)."""
    return _FINISH_REASONS.get(reason, reason)


def given(value: Any) -> bool:
    """False for None and the SDK's NotGiven/Omit sentinels."""
    return value is not None and not isinstance(value, _SENTINELS)


_MAPPING, _MODEL, _OBJECT = 0, 1, 2
_ACCESS: dict[type, int] = {dict: _MAPPING}
_MISSING = object()


def _access_for(obj: Any) -> int:
    if isinstance(obj, Mapping):
        return _MAPPING
    if isinstance(obj, pydantic.BaseModel) and isinstance(getattr(obj, "__dict__", None), dict):
        return _MODEL
    return _OBJECT


def field(obj: Any, key: str) -> Any:
    """``obj[key]`` for mappings, ``obj.key`` for SDK (pydantic) objects, None when absent.

    The kind of access is found once per type (ABC checks are slow), and a pydantic model's
    fields are read from its ``__dict__`` (a missing one would cost a raised AttributeError).
    """
    kind = type(obj)
    access = _ACCESS.get(kind)
    if access is None:
        access = _ACCESS[kind] = _access_for(obj)
    if access == _MAPPING:
        return obj.get(key)
    if access == _MODEL:
        value = obj.__dict__.get(key, _MISSING)
        if value is _MISSING:
            extra = obj.__pydantic_extra__  # fields the SDK does not know (extra="allow")
            return extra.get(key) if extra else None
        return value
    return getattr(obj, key, None)


def fields_of(obj: Any) -> Mapping[str, Any] | None:
    """All of ``obj``'s fields at once, where that is a plain read: a mapping itself, or an SDK
    (pydantic) object's ``__dict__`` (declared fields only; use ``field`` for extras). None for
    other objects. For the per-chunk path of streams, where every call counts."""
    kind = type(obj)
    access = _ACCESS.get(kind)
    if access is None:
        access = _ACCESS[kind] = _access_for(obj)
    if access == _MAPPING:
        return obj  # type: ignore[no-any-return]
    if access == _MODEL:
        return obj.__dict__  # type: ignore[no-any-return]
    return None


def getter(obj: Any) -> Callable[[str], Any]:
    """``field(obj, key)`` for reading several keys of one object: a plain ``.get`` where
    ``fields_of`` gives one (declared fields), else ``field`` itself."""
    values = fields_of(obj)
    return values.get if values is not None else functools.partial(field, obj)


# --- request ------------------------------------------------------------------------------


def _content_part(part: Any) -> dict[str, Any]:
    kind = field(part, "type")
    if kind == "text":
        return {"type": "text", "content": field(part, "text")}
    if kind == "image_url":
        image = field(part, "image_url")
        url = field(image, "url") if not isinstance(image, str) else image
        out = media_part(url, "image")
        detail = field(image, "detail") if not isinstance(image, str) else None
        if given(detail):
            out["detail"] = detail
        return out
    if kind == "input_audio":
        return audio_part(field(part, "input_audio"))
    if kind == "file":
        return file_part(field(part, "file"), ("file_id", "filename", "file_data"))
    if kind == "refusal":
        return {"type": "refusal", "content": field(part, "refusal")}
    # Unknown part types are kept whole (GenericPart) so nothing is lost.
    return {"type": str(kind), "openai": part}


def audio_part(audio: Any) -> dict[str, Any]:
    """``{"data": base64, "format": "wav"}`` (either API) as a semconv blob part."""
    fmt = field(audio, "format")
    return {
        "type": "blob",
        "modality": "audio",
        "mime_type": f"audio/{fmt}" if fmt else None,
        "content": field(audio, "data"),
    }


def file_part(file: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """A file reference or inline file (either API) as a semconv file part."""
    out = {"type": "file", "modality": "file"}
    for key in keys:
        value = field(file, key)
        if given(value):
            out[key] = value
    return out


def media_part(url: Any, modality: str) -> dict[str, Any]:
    if isinstance(url, str):
        match = _DATA_URL.match(url)
        if match and match.group("b64"):
            return {
                "type": "blob",
                "modality": modality,
                "mime_type": match.group("mime") or None,
                "content": url[match.end() :],
            }
    return {"type": "uri", "modality": modality, "uri": url}


class _Limit:
    """The content size cap (characters of one part), set by the instrumentor."""

    size = DEFAULT_MAX_CONTENT_SIZE


LIMIT = _Limit()


class _Redaction:
    """The redactor the instrumentor was given (``instrument(redact=...)``), or None."""

    redactor: Redactor | None = None


REDACTION = _Redaction()


def encode_messages(messages: list[Any]) -> str:
    """Semconv messages (or instruction parts) as the attribute's JSON, redacted first."""
    redactor = REDACTION.redactor
    return dumps(redactor.messages(messages) if redactor is not None else messages)


_CAPPED_FIELDS = ("content", "file_data", "uri")
_OMITTED_KEY = f'"{sc.OMITTED_MARKER}":'


def cap(part: dict[str, Any]) -> dict[str, Any]:
    """Leave out a part's content when it is over the cap, and say so in the part: never cut."""
    limit = LIMIT.size
    for key in _CAPPED_FIELDS:
        value = part.get(key)
        if isinstance(value, str) and len(value) > limit:
            part[key] = None
            part[sc.OMITTED_MARKER] = {"field": key, "size": len(value), "limit": limit}
    return part


def omitted_content(encoded: str) -> bool:
    """Whether JSON from ``dumps`` holds a part that ``cap`` emptied (the key, unescaped, can
    only be a key: inside JSON strings its quotes would be escaped)."""
    return _OMITTED_KEY in encoded


def _content_parts(content: Any) -> list[dict[str, Any]]:
    if not given(content):
        return []
    if isinstance(content, str):
        return [cap({"type": "text", "content": content})]
    if not isinstance(content, list | tuple):  # not API input; kept as what it is
        return [{"type": type(content).__name__, "openai": content}]
    return [cap(_content_part(part)) for part in content]


def _tool_call_parts(tool_calls: Any) -> list[dict[str, Any]]:
    parts = []
    for call in tool_calls or ():
        function = field(call, "function")
        if function is None:  # custom tools carry their input under "custom"
            custom = field(call, "custom")
            parts.append(
                {
                    "type": "tool_call",
                    "id": field(call, "id"),
                    "name": field(custom, "name"),
                    "arguments": field(custom, "input"),
                    "tool_type": "custom",
                }
            )
            continue
        parts.append(
            {
                "type": "tool_call",
                "id": field(call, "id"),
                "name": field(function, "name"),
                "arguments": field(function, "arguments"),
            }
        )
    return parts


def input_message(message: Any) -> dict[str, Any]:
    """One OpenAI chat message (dict or SDK object) as a semconv ChatMessage."""
    if type(message) is dict and len(message) == 2:  # the common {"role", "content": str}
        role = message.get("role")
        content = message.get("content")
        if (
            type(content) is str
            and type(role) is str
            and role not in ("tool", "function")
            and len(content) <= LIMIT.size
        ):
            return {"role": role, "parts": [{"type": "text", "content": content}]}
    role = field(message, "role")
    content = field(message, "content")
    if role == "tool":
        parts: list[dict[str, Any]] = [
            {
                "type": "tool_call_response",
                "id": field(message, "tool_call_id"),
                "response": content if isinstance(content, str) else _content_parts(content),
            }
        ]
    else:
        parts = _content_parts(content)
        refusal = field(message, "refusal")
        if given(refusal):
            parts.append({"type": "refusal", "content": refusal})
        parts.extend(_tool_call_parts(field(message, "tool_calls")))
        legacy_call = field(message, "function_call")
        if given(legacy_call):
            parts.append(
                {
                    "type": "tool_call",
                    "id": None,
                    "name": field(legacy_call, "name"),
                    "arguments": field(legacy_call, "arguments"),
                    "tool_type": "function_call",
                }
            )
    out: dict[str, Any] = {"role": role, "parts": parts}
    name = field(message, "name")
    if given(name):
        out["name"] = name
    if role == "function":  # legacy function results
        out["parts"] = [{"type": "tool_call_response", "id": None, "response": content}]
    return out


def tool_definitions(tools: Iterable[Any]) -> list[dict[str, Any]]:
    """Tools in the semconv shape (type, name, description, parameters), all other keys kept."""
    out = []
    for tool in tools:
        kind = field(tool, "type")
        inner = field(tool, kind) if isinstance(kind, str) else None
        if isinstance(inner, Mapping) or (inner is not None and not isinstance(inner, str)):
            definition = {"type": kind}
            for key in ("name", "description", "parameters", "strict", "format"):
                value = field(inner, key)
                if given(value):
                    definition[key] = value
            out.append(definition)
        else:
            out.append(dict(tool) if isinstance(tool, Mapping) else {"type": str(kind)})
    return out


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


def request_attributes(kwargs: Mapping[str, Any], instance: Any) -> dict[str, Any]:
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
        attrs[sc.REQUEST_STOP_SEQUENCES] = (stop,) if isinstance(stop, str) else tuple(stop)
    response_format = kwargs.get("response_format")
    if given(response_format):
        kind = field(response_format, "type") if not isinstance(response_format, type) else None
        attrs[sc.OUTPUT_TYPE] = "text" if kind == "text" else "json"

    messages: Any = kwargs.get("messages")
    converted = [input_message(m) for m in messages] if given(messages) else None
    return add_content(attrs, converted, kwargs, NOT_OPTIONS)


def add_content(
    attrs: dict[str, Any],
    messages: list[dict[str, Any]] | None,
    kwargs: Mapping[str, Any],
    not_options: frozenset[str],
) -> dict[str, Any]:
    """The request's content attributes (either API): the input messages (and whether a part
    was left out over the size cap), the tool definitions, and the other request options."""
    if messages is not None:
        encoded = encode_messages(messages)
        attrs[sc.INPUT_MESSAGES] = encoded
        if omitted_content(encoded):
            attrs[sc.CONTENT_OMITTED] = True
    source = kwargs.get("messages", kwargs.get("input"))
    if type(source) is RenderedMessages:  # rendered from a Prompt: say which, and with what
        attrs[sc.PROMPT_NAME] = source.prompt.name
        attrs[sc.PROMPT_VERSION] = source.prompt.version
        attrs[sc.PROMPT_VARIABLES] = dumps(source.variables)
    tools: Any = kwargs.get("tools")
    if given(tools):
        attrs[sc.TOOL_DEFINITIONS] = dumps(tool_definitions(tools))
    options = {k: v for k, v in kwargs.items() if k not in not_options and given(v)}
    if options:
        redactor = REDACTION.redactor
        attrs[sc.REQUEST_OPTIONS] = dumps(
            redactor.value(json.loads(dumps(options))) if redactor is not None else options
        )
    return attrs


# --- response -----------------------------------------------------------------------------


def output_message(message: Any, finish_reason: Any) -> dict[str, Any]:
    """One choice's message as a semconv OutputMessage."""
    out = input_message(message)
    out["role"] = out.get("role") or "assistant"
    reason = finish_reason if isinstance(finish_reason, str) else "error"
    out["finish_reason"] = semconv_finish_reason(reason)
    return out


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


def response_attributes(completion: Any) -> dict[str, Any]:
    """Span attributes from a ChatCompletion: ids, model, finish reasons, usage, output content."""
    attrs = response_identity(completion)
    choices = field(completion, "choices") or ()
    reasons = []
    messages = []
    for choice in choices:
        reason = field(choice, "finish_reason")
        reasons.append(reason if isinstance(reason, str) else "")
        messages.append(output_message(field(choice, "message"), reason))
    if reasons:
        attrs[sc.RESPONSE_FINISH_REASONS] = tuple(reasons)
    attrs[sc.OUTPUT_MESSAGES] = encode_messages(messages)
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
