"""Transparent proxies around the SDK's ``Stream`` and ``AsyncStream``.

They look and behave exactly like the stream they wrap (``isinstance`` included); on the side
they feed each chunk to the call's buffer and end its span exactly once: at exhaustion, on an
error, on ``close()``, on leaving a ``with`` block, or when the stream is garbage collected.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import wrapt

from ._call import ChatCall, log_internal_error


class _StreamProxyBase(wrapt.ObjectProxy):  # type: ignore[type-arg]
    def __init__(self, stream: Any, call: ChatCall) -> None:
        super().__init__(stream)
        call.buffer = call.api.new_buffer(call.options)
        self._self_call = call

    def __del__(self) -> None:
        # An abandoned stream: record what arrived, as incomplete. Never raise from __del__.
        try:
            self._self_call.finish_stream(exhausted=False)
        except Exception:  # pragma: no cover - finish_stream guards itself
            log_internal_error("stream garbage collection")


class SyncStreamProxy(_StreamProxyBase):
    def __iter__(self) -> SyncStreamProxy:
        return self

    def __next__(self) -> Any:
        call = self._self_call
        try:
            chunk = self.__wrapped__.__next__()
        except StopIteration:
            call.finish_stream(exhausted=True)
            raise
        except BaseException as exc:
            call.fail(exc)
            raise
        call.on_chunk(chunk)
        return chunk

    def __enter__(self) -> SyncStreamProxy:
        self.__wrapped__.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, tb)
        finally:
            self._self_call.finish_stream(exhausted=False)

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_call.finish_stream(exhausted=False)


class AsyncStreamProxy(_StreamProxyBase):
    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        call = self._self_call
        try:
            chunk = await self.__wrapped__.__anext__()
        except StopAsyncIteration:
            call.finish_stream(exhausted=True)
            raise
        except BaseException as exc:
            call.fail(exc)
            raise
        call.on_chunk(chunk)
        return chunk

    async def __aenter__(self) -> AsyncStreamProxy:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any:
        try:
            return await self.__wrapped__.__aexit__(exc_type, exc, tb)
        finally:
            self._self_call.finish_stream(exhausted=False)

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_call.finish_stream(exhausted=False)

    async def aclose(self) -> None:
        try:
            await self.__wrapped__.aclose()
        finally:
            self._self_call.finish_stream(exhausted=False)
