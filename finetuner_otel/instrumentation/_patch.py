"""Wrapper factories for the patched SDK methods: ``traced(wrapped, instance, args, kwargs)``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import trace

from ._call import ChatCall, log_internal_error
from ._stream import AsyncStreamProxy, SyncStreamProxy

Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]
DATASET_KEYWORD = "dataset_name"


def _prepare(kwargs: dict[str, Any]) -> Any:
    """Strip our keyword, and make ``messages`` re-iterable so both we and the SDK can read it."""
    dataset_keyword = kwargs.pop(DATASET_KEYWORD, None)
    messages = kwargs.get("messages")
    if messages is not None and not isinstance(messages, list | tuple | str | dict):
        try:
            iter(messages)
        except TypeError:
            return dataset_keyword  # not iterable: let the SDK report it as it would
        kwargs["messages"] = list(messages)  # a generator; the user's own errors propagate
    return dataset_keyword


def _respond(call: ChatCall, result: Any, proxy: type[SyncStreamProxy | AsyncStreamProxy]) -> Any:
    """Record a successful result; streams come back wrapped, everything else untouched."""
    try:
        if hasattr(result, "choices"):
            call.complete(result)
            return result
        if hasattr(result, "response") and (
            hasattr(result, "__next__") or hasattr(result, "__anext__")
        ):
            return proxy(result, call)
        call.end_without_response(f"unrecorded result type {type(result).__name__}")
    except Exception:
        log_internal_error("the result handling")
        if not call.ended:
            call.end_without_response("result handling")
    return result


def chat_create(tracer: trace.Tracer, default_dataset: str) -> Wrapper:
    def traced(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        dataset_keyword = _prepare(kwargs)
        call = ChatCall.start(tracer, instance, kwargs, dataset_keyword, default_dataset)
        if call is None:
            return wrapped(*args, **kwargs)
        token = call.activate()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            call.deactivate(token)
        return _respond(call, result, SyncStreamProxy)

    return traced


def async_chat_create(tracer: trace.Tracer, default_dataset: str) -> Wrapper:
    async def traced(
        wrapped: Callable[..., Awaitable[Any]],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        dataset_keyword = _prepare(kwargs)
        call = ChatCall.start(tracer, instance, kwargs, dataset_keyword, default_dataset)
        if call is None:
            return await wrapped(*args, **kwargs)
        token = call.activate()
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            call.deactivate(token)
        return _respond(call, result, AsyncStreamProxy)

    return traced
