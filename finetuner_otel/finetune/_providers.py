"""Fine-tuning providers: one small interface (``Provider``, in ``_types``), and OpenAI's and
Together's APIs behind it (``_openai``, ``_together``); here, what both share.

Both are driven through the ``openai`` SDK's client: OpenAI's fine-tuning API by its own
resources (so any server that implements that API works, given its ``base_url``), Together's
REST API by the client's plain ``get``/``post``, which bring the SDK's retries, timeouts and
error types without another HTTP library.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from ._types import ProviderError


@contextlib.contextmanager
def provider_errors(provider: str) -> Iterator[None]:
    """The SDK's errors as ProviderError, with the provider's message; ``retryable`` is set for
    rate limits, server errors and lost connections."""
    import openai

    try:
        yield
    except openai.APIStatusError as exc:
        raise ProviderError(
            f"{provider} answered {exc.status_code}: {error_message(exc)}",
            retryable=exc.status_code == 429 or exc.status_code >= 500,
            status_code=exc.status_code,
        ) from exc
    except openai.APIConnectionError as exc:
        raise ProviderError(f"{provider} could not be reached: {exc}", retryable=True) from exc


def error_message(exc: Any) -> str:
    """The message in an SDK error's body, else the error's own."""
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
        if body.get("message"):
            return str(body["message"])
    return str(getattr(exc, "message", exc))


def field(obj: Any, key: str) -> Any:
    """``obj[key]`` of a mapping, ``obj.key`` of an SDK object; None when it has none."""
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def host_name(base_url: str) -> str:
    """A provider's name from its base URL: the host (and port)."""
    parts = urlsplit(base_url)
    return parts.netloc or base_url


def plain(value: Any) -> dict[str, Any]:
    """A mapping or an SDK (pydantic) object as a plain dict; None as an empty one."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    dump = getattr(value, "model_dump", None)
    return dict(dump()) if callable(dump) else {}
