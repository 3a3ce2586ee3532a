"""One traced LLM call: its span, from request to the last streamed chunk.

Every method here is guarded: a failure of ours is logged (once per place, with its traceback)
and recorded on the span as ``finetuner.capture_error``; it never reaches the user's call.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import _semconv as sc
from .._context import current_dataset
from .._settings import check_dataset_name

if TYPE_CHECKING:
    from ._apis import Api, StreamBuffer

logger = logging.getLogger("finetuner_otel.instrumentation")
_logged: set[str] = set()


def log_internal_error(where: str) -> None:
    """Log a failure inside our instrumentation: in full the first time per place, then quietly."""
    if where in _logged:
        logger.debug("finetuner-otel: internal error in %s (again)", where, exc_info=True)
        return
    _logged.add(where)
    logger.warning(
        "finetuner-otel: internal error in %s; the OpenAI call itself is unaffected. "
        "Please report this with the traceback.",
        where,
        exc_info=True,
    )


def resolve_dataset(keyword: Any, default: str) -> str:
    """Precedence: the call's dataset_name keyword > the innermost dataset() scope > default."""
    if keyword is not None:
        try:
            return check_dataset_name(keyword, source="dataset_name")
        except ValueError as exc:
            logger.warning("finetuner-otel: %s; recording the call under the next choice", exc)
    return current_dataset() or default


class ChatCall:
    """The span of one chat call (either API) and what it has collected so far."""

    __slots__ = ("api", "buffer", "ended", "span")

    def __init__(self, span: trace.Span, api: Api) -> None:
        self.span = span
        self.api = api
        self.buffer: StreamBuffer | None = None
        self.ended = False

    @classmethod
    def start(
        cls,
        tracer: trace.Tracer,
        api: Api,
        instance: Any,
        kwargs: Mapping[str, Any],
        dataset_keyword: Any,
        default_dataset: str,
    ) -> ChatCall | None:
        """Open the span for this call, or return None when it should not be traced."""
        if not is_instrumentation_enabled():
            return None
        try:
            attrs = api.request_attributes(kwargs, instance)
            attrs[sc.DATASET] = resolve_dataset(dataset_keyword, default_dataset)
            model = attrs.get(sc.REQUEST_MODEL)
            name = f"{sc.OPERATION_CHAT} {model}" if model else sc.OPERATION_CHAT
            return cls(tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attrs), api)
        except Exception:
            log_internal_error("the request capture")
            return None

    def activate(self) -> object:
        """Make the span current while the SDK sends the request (so HTTP spans nest under it)."""
        return otel_context.attach(trace.set_span_in_context(self.span))

    @staticmethod
    def deactivate(token: object) -> None:
        otel_context.detach(token)  # type: ignore[arg-type]

    def fail(self, exc: BaseException) -> None:
        """The SDK raised: record the error and end the span. The caller re-raises ``exc``."""
        if self.ended:
            return
        try:
            self.ended = True
            span = self.span
            span.set_attribute(sc.ERROR_TYPE, type(exc).__qualname__)
            status = getattr(exc, "status_code", None)
            if isinstance(status, int):
                span.set_attribute(sc.HTTP_STATUS_CODE, status)
            if self.buffer is not None:
                span.set_attributes(self.buffer.attributes(incomplete=True))
                span.set_attribute(sc.INCOMPLETE, True)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            span.end()
        except Exception:
            log_internal_error("the error capture")

    def complete(self, result: Any) -> None:
        """A whole result (ChatCompletion, Response) came back: record it and end the span."""
        try:
            self.ended = True
            self.span.set_attributes(self.api.response_attributes(result))
        except Exception:
            self.span.set_attribute(sc.CAPTURE_ERROR, "response")
            log_internal_error("the response capture")
        finally:
            self.span.end()

    def end_without_response(self, reason: str) -> None:
        self.ended = True
        self.span.set_attribute(sc.CAPTURE_ERROR, reason)
        self.span.end()

    # --- streams -------------------------------------------------------------------------

    def on_chunk(self, chunk: Any) -> None:
        buffer = self.buffer
        if buffer is None or self.ended:
            return
        try:
            buffer.add(chunk)
        except Exception:
            self.buffer = None
            self.span.set_attribute(sc.CAPTURE_ERROR, "stream chunk")
            log_internal_error("the stream capture")

    def finish_stream(self, exhausted: bool) -> None:
        """The stream ended: ``exhausted`` when it reached its last event, else broken off."""
        if self.ended:
            return
        self.ended = True
        try:
            buffer = self.buffer
            # Reaching the end without the final event (finish_reason, response.completed) is
            # a stream cut short too.
            complete = exhausted and (buffer is None or buffer.finished())
            if buffer is not None:
                self.span.set_attributes(buffer.attributes(incomplete=not complete))
            if not complete:
                self.span.set_attribute(sc.INCOMPLETE, True)
        except Exception:
            self.span.set_attribute(sc.CAPTURE_ERROR, "stream end")
            log_internal_error("the stream end")
        finally:
            self.span.end()
