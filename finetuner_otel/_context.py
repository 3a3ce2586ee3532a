"""Dataset tagging: ``with finetuner_otel.dataset("x"):`` and ``@finetuner_otel.dataset("x")``.

The name travels as OpenTelemetry baggage (``finetuner.dataset``) in the current context, so it
follows asyncio tasks, threads whose context is propagated (``contextvars.copy_context``, the
OTel threading instrumentation) and, with a W3C baggage propagator, other services.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar, cast

from opentelemetry import baggage, context

from ._settings import check_dataset_name

BAGGAGE_KEY = "finetuner.dataset"
PURPOSE_KEY = "finetuner.purpose"

_F = TypeVar("_F", bound=Callable[..., Any])


def current_dataset(ctx: context.Context | None = None) -> str | None:
    """The dataset named by the innermost active ``dataset(...)`` scope (of ``ctx``, by default
    the current context), or None."""
    value = baggage.get_baggage(BAGGAGE_KEY, ctx)
    return value if isinstance(value, str) else None


def current_purpose(ctx: context.Context | None = None) -> str | None:
    """Why the calls of this scope are made, when not for the app (``"eval"``), or None."""
    value = baggage.get_baggage(PURPOSE_KEY, ctx)
    return value if isinstance(value, str) else None


class purpose:
    """Mark the calls made inside this scope (e.g. ``"eval"``): recorded, never trained on."""

    __slots__ = ("_tokens", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._tokens: list[object] = []

    def __enter__(self) -> purpose:
        self._tokens.append(context.attach(baggage.set_baggage(PURPOSE_KEY, self.name)))
        return self

    def __exit__(self, *exc_info: object) -> None:
        context.detach(self._tokens.pop())  # type: ignore[arg-type]


class dataset:
    """Tag every LLM call made inside this scope with a dataset name.

    Works as a context manager (``with`` or ``async with``) and as a decorator of plain and
    ``async`` functions. Scopes nest: the innermost wins; a ``dataset_name=`` keyword on the call
    itself wins over any scope.
    """

    __slots__ = ("_tokens", "name")

    def __init__(self, name: str) -> None:
        self.name = check_dataset_name(name)
        self._tokens: list[object] = []

    def __enter__(self) -> dataset:
        ctx = baggage.set_baggage(BAGGAGE_KEY, self.name)
        self._tokens.append(context.attach(ctx))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        context.detach(self._tokens.pop())  # type: ignore[arg-type]

    async def __aenter__(self) -> dataset:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, func: _F) -> _F:
        name = self.name
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_scoped(*args: Any, **kwargs: Any) -> Any:
                with dataset(name):
                    return await func(*args, **kwargs)

            return cast(_F, async_scoped)

        @functools.wraps(func)
        def scoped(*args: Any, **kwargs: Any) -> Any:
            with dataset(name):
                return func(*args, **kwargs)

        return cast(_F, scoped)

    def __repr__(self) -> str:
        return f"dataset({self.name!r})"
