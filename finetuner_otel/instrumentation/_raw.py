"""Raw responses (``with_raw_response``, ``with_streaming_response``): recorded when the user reads
them, through transparent proxies.

A raw response whose body is already read (``with_raw_response`` without streaming) is recorded
at once from its parsed body, which the SDK caches, so the user's own ``parse()`` gets the very
same object. Otherwise the body is the user's to read, and the call is recorded as it is read:
``parse()`` gives a whole result (recorded) or a stream (handed back wrapped in our stream proxy,
so it is recorded as it is iterated); ``read()`` / ``text()`` / ``json()`` read a whole body that
the SDK's ``parse()`` then turns into the result without another read (an event stream read
whole is recorded from its events). A body read only in pieces (``iter_bytes()``,
``iter_lines()``, ...) is not parsed by us; the call's row says so and how to have it recorded.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import wrapt

from ._call import ChatCall, log_internal_error
from ._stream import AsyncStreamProxy, SyncStreamProxy

_NEVER_READ = (
    "the raw response was never read; read it with .parse() (or .read(), .json()) to record it"
)
_RAW_READ = (
    "the response was read as raw bytes with .{}(), which finetuner-otel does not parse; read "
    "it with .parse() to record the call"
)


def is_raw_response(result: Any) -> bool:
    """An SDK raw response (``LegacyAPIResponse``, ``APIResponse``, ``AsyncAPIResponse``)."""
    return callable(getattr(result, "parse", None)) and hasattr(result, "http_response")


def record_events(call: ChatCall, body: bytes) -> None:
    """A whole event-stream body (read with ``.read()``): its ``data:`` events, in order, into
    the call's stream buffer, as if the stream had been iterated to its end."""
    call.buffer = call.api.new_buffer(call.options)
    done = False
    for line in body.decode("utf-8", "replace").splitlines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
            break
        if data:
            call.on_chunk(json.loads(data))
    call.finish_stream(exhausted=done or (call.buffer is not None and call.buffer.finished()))


def _is_stream(parsed: Any) -> bool:
    return hasattr(parsed, "response") and (
        hasattr(parsed, "__next__") or hasattr(parsed, "__anext__")
    )


def _sse(response: Any) -> bool:
    headers = getattr(response.http_response, "headers", None) or {}
    return "text/event-stream" in (headers.get("content-type") or "")


class _RawResponseProxyBase(wrapt.ObjectProxy):  # type: ignore[type-arg]
    def __init__(self, response: Any, call: ChatCall) -> None:
        super().__init__(response)
        self._self_call = call
        self._self_stream: Any = None  # our proxy of the parsed stream, once made
        self._self_raw_read: str | None = None

    def _self_record(self, parsed: Any) -> Any:
        """What ``parse()`` returned, recorded; a stream comes back wrapped (the same proxy for
        the SDK's cached stream, however often ``parse()`` is called)."""
        call = self._self_call
        try:
            if self._self_stream is not None and self._self_stream.__wrapped__ is parsed:
                return self._self_stream
            if call.ended:
                return parsed
            if call.api.is_result(parsed):
                call.complete(parsed)
            elif _is_stream(parsed):
                proxy = AsyncStreamProxy if hasattr(parsed, "__anext__") else SyncStreamProxy
                self._self_stream = proxy(parsed, call)
                return self._self_stream
            else:  # parse(to=...) a type of the user's: not a result we can read
                call.end_without_response(f"parsed as {type(parsed).__name__}")
        except Exception:
            log_internal_error("the raw response capture")
        return parsed

    def _self_after_read(self) -> None:
        """The whole body was read: record it, from the SDK's parse of a JSON body, or from the
        events of an event stream."""
        call = self._self_call
        if call.ended:
            return
        try:
            if _sse(self.__wrapped__):
                record_events(call, self.__wrapped__.http_response.content)
                return
            parsed = self.__wrapped__.parse()
            if call.api.is_result(parsed):
                call.complete(parsed)
        except Exception:
            log_internal_error("the raw response capture")

    def _self_raw(self, method: str) -> None:
        if self._self_raw_read is None:
            self._self_raw_read = method

    def _self_unread(self) -> None:
        """The response is closed or gone: a call not recorded by now says why (unless the
        stream that ``parse()`` gave out has the call now: it ends it as it is read)."""
        call = self._self_call
        if call.ended or self._self_stream is not None:
            return
        try:
            raw = self._self_raw_read
            call.end_without_response(_RAW_READ.format(raw) if raw else _NEVER_READ)
        except Exception:
            log_internal_error("the raw response end")

    def __del__(self) -> None:
        self._self_unread()


class _PieceReaders(_RawResponseProxyBase):
    """``APIResponse``'s readers of a body in pieces (sync or async iterators, handed on as
    they are): the call is then not recorded, and its row says why."""

    def iter_bytes(self, *args: Any, **kwargs: Any) -> Any:
        self._self_raw("iter_bytes")
        return self.__wrapped__.iter_bytes(*args, **kwargs)

    def iter_text(self, *args: Any, **kwargs: Any) -> Any:
        self._self_raw("iter_text")
        return self.__wrapped__.iter_text(*args, **kwargs)

    def iter_lines(self, *args: Any, **kwargs: Any) -> Any:
        self._self_raw("iter_lines")
        return self.__wrapped__.iter_lines(*args, **kwargs)


class LegacyRawResponseProxy(_RawResponseProxyBase):
    """``with_raw_response``'s ``LegacyAPIResponse`` (sync and async clients alike: its
    ``parse()`` is sync and gives an ``AsyncStream`` for the async client); its body is read
    through the ``content`` and ``text`` properties."""

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        return self._self_record(self.__wrapped__.parse(*args, **kwargs))

    @property
    def content(self) -> Any:
        content = self.__wrapped__.content
        self._self_after_read()
        return content

    @property
    def text(self) -> Any:
        text = self.__wrapped__.text
        self._self_after_read()
        return text


class SyncRawResponseProxy(_PieceReaders):
    """``with_streaming_response``'s sync ``APIResponse``."""

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        return self._self_record(self.__wrapped__.parse(*args, **kwargs))

    def read(self, *args: Any, **kwargs: Any) -> Any:
        content = self.__wrapped__.read(*args, **kwargs)
        self._self_after_read()
        return content

    def text(self, *args: Any, **kwargs: Any) -> Any:
        text = self.__wrapped__.text(*args, **kwargs)
        self._self_after_read()
        return text

    def json(self, *args: Any, **kwargs: Any) -> Any:
        value = self.__wrapped__.json(*args, **kwargs)
        self._self_after_read()
        return value

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            if self._self_stream is None:
                self._self_unread()


class AsyncRawResponseProxy(_PieceReaders):
    """An async ``with_streaming_response`` response (``AsyncAPIResponse``: ``parse()`` and
    its readers are coroutines)."""

    async def parse(self, *args: Any, **kwargs: Any) -> Any:
        parsed = await self.__wrapped__.parse(*args, **kwargs)
        return self._self_record(parsed)

    async def read(self, *args: Any, **kwargs: Any) -> Any:
        content = await self.__wrapped__.read(*args, **kwargs)
        await self._self_after_async_read()
        return content

    async def text(self, *args: Any, **kwargs: Any) -> Any:
        text = await self.__wrapped__.text(*args, **kwargs)
        await self._self_after_async_read()
        return text

    async def json(self, *args: Any, **kwargs: Any) -> Any:
        value = await self.__wrapped__.json(*args, **kwargs)
        await self._self_after_async_read()
        return value

    async def _self_after_async_read(self) -> None:
        call = self._self_call
        if call.ended:
            return
        try:
            if _sse(self.__wrapped__):
                record_events(call, self.__wrapped__.http_response.content)
                return
            parsed = await self.__wrapped__.parse()
            if call.api.is_result(parsed):
                call.complete(parsed)
        except Exception:
            log_internal_error("the raw response capture")

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            if self._self_stream is None:
                self._self_unread()


def wrap_raw_response(result: Any, call: ChatCall) -> Any:
    """The raw response, recorded now if its body is read, else wrapped to record its reading."""
    parse = result.parse
    http = result.http_response
    whole = not _sse(result) and getattr(http, "is_closed", True)
    if whole:  # with_raw_response, not streamed: the body is here; parse() caches its result
        parsed = parse()
        if call.api.is_result(parsed):
            call.complete(parsed)
            return result
    if inspect.iscoroutinefunction(parse):
        return AsyncRawResponseProxy(result, call)
    if isinstance(getattr(type(result), "text", None), property):
        return LegacyRawResponseProxy(result, call)
    return SyncRawResponseProxy(result, call)
