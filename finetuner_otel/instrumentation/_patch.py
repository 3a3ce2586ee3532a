"""Wrapper factories for the patched SDK methods: ``traced(wrapped, instance, args, kwargs)``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any

import openai
import wrapt

from .. import _semconv as sc
from .._context import dataset
from .._settings import check_dataset_name
from ._apis import CHAT, RESPONSES, Api
from ._call import ChatCall, Tracers, log_internal_error
from ._options import CaptureOptions
from ._raw import is_raw_response, wrap_raw_response
from ._stream import AsyncStreamProxy, SyncStreamProxy

Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]
DATASET_KEYWORD = "dataset_name"
_MARK = "_finetuner_otel_wrapper"
# True while one of our wrappers is inside the SDK method it traces: the request it posts is
# already being recorded.
IN_TRACED_CALL: ContextVar[bool] = ContextVar("finetuner_otel_in_traced_call", default=False)


def mark_ours(wrapper: Wrapper) -> Wrapper:
    """Tag a wrapper function as ours, so uninstrument() can find it among others' wrappers."""
    setattr(wrapper, _MARK, True)
    return wrapper


def unwrap_ours(owner: type, name: str) -> None:
    """Remove our wrapper of ``owner.name`` wherever it sits in a chain of wrapt wrappers.

    ``opentelemetry.instrumentation.utils.unwrap`` removes the outermost wrapper, whoever made
    it: with another instrumentation wrapped around ours, it would remove theirs and leave ours.
    """
    parent: Any = None
    current = owner.__dict__.get(name)
    while isinstance(current, wrapt.FunctionWrapper):
        if getattr(current._self_wrapper, _MARK, False):
            inner = current.__wrapped__
            if parent is None:
                setattr(owner, name, inner)
            else:
                parent.__wrapped__ = inner
            return
        parent, current = current, current.__wrapped__


class _Replay(wrapt.ObjectProxy):  # type: ignore[type-arg]
    """The user's one-shot iterator, already read by us, replaying its items for the SDK. It
    passes for the user's object everywhere else (its class, its attributes), so the SDK treats
    it exactly as it treats the original: reads it, or refuses it with the same error."""

    def __init__(self, iterator: Any, items: list[Any]) -> None:
        super().__init__(iterator)
        self._self_items = iter(items)

    def __iter__(self) -> _Replay:
        return self

    def __next__(self) -> Any:
        return next(self._self_items)


def _prepare(kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Strip our keyword; return it with the keywords to record the request from.

    A one-shot iterator (a generator) as ``messages`` or ``input`` is read once: we record the
    items, and the SDK is handed the same object replaying them, so it does exactly what it does
    with the user's own (chat completions reads it; the Responses API raises ``TypeError``).
    """
    dataset_keyword = kwargs.pop(DATASET_KEYWORD, None)
    recorded = kwargs
    for key in ("messages", "input"):
        value = kwargs.get(key)
        if value is None or isinstance(value, list | tuple | str | dict):
            continue
        try:
            one_shot = iter(value) is value
        except TypeError:
            continue  # not iterable: let the SDK report it as it would
        if one_shot:
            items = list(value)  # the user's own errors propagate, as the SDK's reading would
            if recorded is kwargs:
                recorded = dict(kwargs)
            recorded[key] = items
            kwargs[key] = _Replay(value, items)
    return dataset_keyword, recorded


def _to_model(kwargs: dict[str, Any], recorded: dict[str, Any], model: Any) -> dict[str, Any]:
    """The request for a routed call (or its fallback): the same, to ``model``; a one-shot
    iterator we replay is replayed again from the start."""
    out = {**kwargs, "model": model}
    for key in ("messages", "input"):
        value = out.get(key)
        if isinstance(value, _Replay):
            out[key] = _Replay(value.__wrapped__, recorded[key])
    return out


def _respond(call: ChatCall, result: Any, proxy: type[SyncStreamProxy | AsyncStreamProxy]) -> Any:
    """Record a successful result; streams and raw responses come back wrapped, everything else
    untouched."""
    try:
        if call.api.is_result(result):
            call.complete(result)
            return result
        if hasattr(result, "response") and (
            hasattr(result, "__next__") or hasattr(result, "__anext__")
        ):
            return proxy(result, call)
        if is_raw_response(result):
            return wrap_raw_response(result, call)
        call.end_without_response(f"unrecorded result type {type(result).__name__}")
    except Exception:
        log_internal_error("the result handling")
        if not call.ended:
            call.end_without_response("result handling")
    return result


def _call_sync(
    call: ChatCall, wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """The SDK call, under its span: the user's errors propagate, the result is recorded."""
    token = call.activate()
    inside = IN_TRACED_CALL.set(True)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        call.fail(exc)
        raise
    finally:
        IN_TRACED_CALL.reset(inside)
        call.deactivate(token)
    return _respond(call, result, SyncStreamProxy)


async def _call_async(
    call: ChatCall,
    wrapped: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    token = call.activate()
    inside = IN_TRACED_CALL.set(True)
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        call.fail(exc)
        raise
    finally:
        IN_TRACED_CALL.reset(inside)
        call.deactivate(token)
    return _respond(call, result, AsyncStreamProxy)


def sync_traced(tracers: Tracers, api: Api, options: CaptureOptions) -> Wrapper:
    """The wrapper for a sync SDK method of ``api`` (``create``, ``parse``)."""

    def traced(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        dataset_keyword, recorded = _prepare(kwargs)
        call = ChatCall.start(tracers, api, instance, recorded, dataset_keyword, options)
        if call is None:
            return wrapped(*args, **kwargs)
        if call.route is None:
            return _call_sync(call, wrapped, args, kwargs)
        try:
            return _call_sync(call, wrapped, args, _to_model(kwargs, recorded, call.route[1]))
        except openai.APIError:  # the candidate failed: the model asked for answers instead
            again = ChatCall.start(
                tracers, api, instance, recorded, dataset_keyword, options, routing=False
            )
            kwargs = _to_model(kwargs, recorded, call.route[0])
            if again is None:
                return wrapped(*args, **kwargs)
            again.span.set_attribute(sc.ROUTE_FALLBACK, call.route[1])
            return _call_sync(again, wrapped, args, kwargs)

    return mark_ours(traced)


def async_traced(tracers: Tracers, api: Api, options: CaptureOptions) -> Wrapper:
    """The wrapper for an async SDK method of ``api``."""

    async def traced(
        wrapped: Callable[..., Awaitable[Any]],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        dataset_keyword, recorded = _prepare(kwargs)
        call = ChatCall.start(tracers, api, instance, recorded, dataset_keyword, options)
        if call is None:
            return await wrapped(*args, **kwargs)
        if call.route is None:
            return await _call_async(call, wrapped, args, kwargs)
        try:
            routed = _to_model(kwargs, recorded, call.route[1])
            return await _call_async(call, wrapped, args, routed)
        except openai.APIError:  # the candidate failed: the model asked for answers instead
            again = ChatCall.start(
                tracers, api, instance, recorded, dataset_keyword, options, routing=False
            )
            kwargs = _to_model(kwargs, recorded, call.route[0])
            if again is None:
                return await wrapped(*args, **kwargs)
            again.span.set_attribute(sc.ROUTE_FALLBACK, call.route[1])
            return await _call_async(again, wrapped, args, kwargs)

    return mark_ours(traced)


class _StreamManagerProxy(wrapt.ObjectProxy):  # type: ignore[type-arg]
    """A ``stream()`` helper's manager that makes its request under the call's dataset: the
    helpers send the request when the ``with`` block is entered, not when they are called."""

    def __init__(self, manager: Any, dataset_name: str) -> None:
        super().__init__(manager)
        self._self_dataset = dataset_name

    def __enter__(self) -> Any:
        with dataset(self._self_dataset):
            return self.__wrapped__.__enter__()

    def __exit__(self, *exc_info: Any) -> Any:
        return self.__wrapped__.__exit__(*exc_info)

    async def __aenter__(self) -> Any:
        with dataset(self._self_dataset):
            return await self.__wrapped__.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self.__wrapped__.__aexit__(*exc_info)


@mark_ours
def stream_helper(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``chat.completions.stream`` / ``responses.stream``: they call the patched ``create``, so
    all this does is take ``dataset_name`` off the helper's arguments and apply it there."""
    name = kwargs.pop(DATASET_KEYWORD, None)
    manager = wrapped(*args, **kwargs)
    if name is None:
        return manager
    try:
        return _StreamManagerProxy(manager, check_dataset_name(name, source="dataset_name"))
    except Exception:
        log_internal_error("the stream helper's dataset_name")
        return manager


# --- the safety net: requests to the chat endpoints made by a way we did not patch -----------

_POSTED_APIS = {"/chat/completions": CHAT, "/responses": RESPONSES}


class _Resource:
    """What the request capture reads of a resource (its client), for a request seen at the
    client's ``post``."""

    __slots__ = ("_client",)

    def __init__(self, client: Any) -> None:
        self._client = client


def _posted(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Api, Mapping[str, Any]] | None:
    """The API and request body of a request to a chat endpoint that no wrapper of ours is
    recording (e.g. through a ``with_raw_response`` bound before instrument())."""
    if IN_TRACED_CALL.get():
        return None
    options = args[1] if len(args) > 1 else kwargs.get("options")
    url = getattr(options, "url", None)
    api = _POSTED_APIS.get(url) if isinstance(url, str) else None
    if api is None or getattr(options, "method", None) != "post":
        return None
    body = getattr(options, "json_data", None)
    return (api, body) if isinstance(body, Mapping) else None


def sync_request(tracers: Tracers, options: CaptureOptions) -> Wrapper:
    """``SyncAPIClient.request``: records chat requests that reached it by an unpatched way.

    (Not ``post``: each resource binds its client's ``post`` when it is made.)"""

    def traced(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        posted = _posted(args, kwargs)
        if posted is None:
            return wrapped(*args, **kwargs)
        api, body = posted
        call = ChatCall.start(tracers, api, _Resource(instance), body, None, options)
        if call is None:
            return wrapped(*args, **kwargs)
        return _call_sync(call, wrapped, args, kwargs)

    return mark_ours(traced)


def async_request(tracers: Tracers, options: CaptureOptions) -> Wrapper:
    """``AsyncAPIClient.request``: the same, for the async client."""

    async def traced(
        wrapped: Callable[..., Awaitable[Any]],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        posted = _posted(args, kwargs)
        if posted is None:
            return await wrapped(*args, **kwargs)
        api, body = posted
        call = ChatCall.start(tracers, api, _Resource(instance), body, None, options)
        if call is None:
            return await wrapped(*args, **kwargs)
        return await _call_async(call, wrapped, args, kwargs)

    return mark_ours(traced)
