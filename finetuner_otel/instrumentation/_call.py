"""One traced LLM call: its span, from request to the last streamed chunk.

Every method here is guarded: a failure of ours is logged (once per place, with its traceback)
and recorded on the span as ``finetuner.capture_error``; it never reaches the user's call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import _semconv as sc
from .._context import current_dataset, current_purpose
from .._ownership import OurCall, note_our_call, note_our_response
from .._settings import check_dataset_name
from ._extensions import SHADOW_OF_KEY, Extensions, ShadowRequest
from ._options import CaptureOptions

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


def _routed(extensions: Extensions, dataset: str, attrs: dict[str, Any]) -> tuple[Any, str] | None:
    """Whether a route sends this call to another model: (asked, routed to), the span's request
    model set to the one called, and the one asked for kept beside it."""
    for hook in extensions.routes:
        asked = attrs.get(sc.REQUEST_MODEL)
        chosen = hook.choose(dataset, asked)
        if chosen:
            attrs[sc.REQUEST_MODEL] = chosen
            attrs[sc.ROUTED_FROM] = asked
            return asked, chosen
    return None


def shadowed_call() -> str:
    """In a shadow's call: the production call it shadows (trace and span id, hex)."""
    value = baggage.get_baggage(SHADOW_OF_KEY)
    return value if isinstance(value, str) else ""


def resolve_dataset(keyword: Any, default: str) -> str:
    """Precedence: the call's dataset_name keyword > the innermost dataset() scope > default."""
    if keyword is not None:
        try:
            return check_dataset_name(keyword, source="dataset_name")
        except ValueError as exc:
            logger.warning("finetuner-otel: %s; recording the call under the next choice", exc)
    return current_dataset() or default


class Tracers(NamedTuple):
    """Where spans are made: ``tracer`` (the app's provider), and ``capture``, a provider that
    samples everything and feeds only our store, for calls the app's sampler drops."""

    tracer: trace.Tracer
    capture: trace.Tracer | None = None


class ChatCall:
    """The span of one chat call (either API) and what it has collected so far."""

    __slots__ = (
        "api",
        "buffer",
        "current",
        "ended",
        "options",
        "ours",
        "request",
        "route",
        "span",
    )

    def __init__(
        self,
        span: trace.Span,
        api: Api,
        options: CaptureOptions,
        current: trace.Span | None = None,
    ) -> None:
        self.span = span
        self.api = api
        self.options = options
        # The span made current during the call: the app's own, even when it was sampled out
        # and ``span`` is our capture span (so the app's sampling decision holds for the rest).
        self.current = current if current is not None else span
        self.ours: OurCall | None = None
        self.buffer: StreamBuffer | None = None
        self.ended = False
        # Set only while shadows are registered: what to offer them once the call completed.
        self.request: tuple[Any, Mapping[str, Any], str] | None = None
        # (the model asked for, the model the call is routed to), for a routed call.
        self.route: tuple[Any, str] | None = None

    @classmethod
    def start(
        cls,
        tracers: Tracers,
        api: Api,
        instance: Any,
        kwargs: Mapping[str, Any],
        dataset_keyword: Any,
        options: CaptureOptions,
        *,
        routing: bool = True,
    ) -> ChatCall | None:
        """Open the span for this call, or return None when it should not be traced.
        ``routing``: whether a route may send it to another model (not for its fallback)."""
        if not is_instrumentation_enabled():
            return None
        try:
            attrs = api.request_attributes(kwargs, instance, options)
            dataset = attrs[sc.DATASET] = resolve_dataset(dataset_keyword, options.default_dataset)
            why = current_purpose()
            if why is not None:
                attrs[sc.PURPOSE] = why
                if why == sc.PURPOSE_SHADOW:
                    attrs[sc.SHADOW_OF] = shadowed_call()
            extensions = options.extensions
            route = None
            if extensions.routes and routing and why is None:  # no call when none is set
                route = _routed(extensions, dataset, attrs)
            model = attrs.get(sc.REQUEST_MODEL)
            name = f"{sc.OPERATION_CHAT} {model}" if model else sc.OPERATION_CHAT
            span = tracers.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attrs)
            current = None
            capture = tracers.capture
            if capture is not None and not span.is_recording():
                # The app's sampler dropped this span; the dataset must not shrink with it.
                span, current = (
                    capture.start_span(name, kind=SpanKind.CLIENT, attributes=attrs),
                    span,
                )
            call = cls(span, api, options, current=current)
            call.route = route
            if extensions.shadows and why is None and route is None and span.is_recording():
                call.request = (instance, kwargs, dataset)
            start = getattr(span, "start_time", None)
            if start is not None:
                trace_id = span.get_span_context().trace_id
                call.ours = note_our_call(trace_id, start, model)
            return call
        except Exception:
            log_internal_error("the request capture")
            return None

    def _end(self) -> None:
        span = self.span
        span.end()
        ours = self.ours
        if ours is not None:
            ours.end = getattr(span, "end_time", None) or time.time_ns()
            attributes = getattr(span, "attributes", None)
            if attributes:
                note_our_response(attributes.get(sc.RESPONSE_ID))

    def activate(self) -> object:
        """Make the span current while the SDK sends the request (so HTTP spans nest under it)."""
        return otel_context.attach(trace.set_span_in_context(self.current))

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
            span.set_status(Status(StatusCode.ERROR, self._described(exc)))
            self._end()
        except Exception:
            log_internal_error("the error capture")

    def _described(self, exc: BaseException) -> str:
        """The error's message, redacted: the SDK's message can echo the request (a 401 body
        quoting the key). Only the error's type when the redactor fails on it."""
        try:
            return self.options.redact_text(f"{type(exc).__name__}: {exc}")
        except Exception:
            log_internal_error("the error redaction")
            return type(exc).__name__

    def complete(self, result: Any) -> None:
        """A whole result (ChatCompletion, Response) came back: record it and end the span."""
        try:
            self.ended = True
            self.span.set_attributes(self.api.response_attributes(result, self.options))
        except Exception:
            self.span.set_attribute(sc.CAPTURE_ERROR, "response")
            log_internal_error("the response capture")
        finally:
            self._end()
        if self.request is not None:
            self._offer()

    def end_without_response(self, reason: str) -> None:
        self.ended = True
        self.span.set_attribute(sc.CAPTURE_ERROR, reason)
        self._end()

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
                self.request = None  # a broken-off stream is not shadowed
        except Exception:
            self.span.set_attribute(sc.CAPTURE_ERROR, "stream end")
            log_internal_error("the stream end")
            self.request = None
        finally:
            self._end()
        if self.request is not None:
            self._offer()

    def _offer(self) -> None:
        """Hand the completed call to the shadows that sample it (each decides first, so a
        call none of them samples costs that decision only; none blocks)."""
        request, self.request = self.request, None
        try:
            assert request is not None
            instance, kwargs, dataset = request
            offered: ShadowRequest | None = None
            for hook in self.options.extensions.shadows:
                if not hook.samples(dataset):
                    continue
                if offered is None:
                    context = self.span.get_span_context()
                    offered = ShadowRequest(
                        self.api.name,
                        getattr(instance, "_client", None),
                        kwargs,
                        dataset,
                        f"{context.trace_id:032x}{context.span_id:016x}",
                    )
                hook.offer(offered)
        except Exception:
            log_internal_error("the shadow offer")
