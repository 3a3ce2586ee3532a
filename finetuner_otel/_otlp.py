"""OTLP trace exports (protobuf or OTLP/JSON) decoded into SDK ``ReadableSpan``\\ s, bounded.

A sender chooses every byte of a request, so decoding is bounded in the ways a small request
can grow: in depth (an ``AnyValue`` nested deeper than ``MAX_DEPTH`` levels is replaced by
``DEEP_MARKER``, and the span is kept) and in size (past a budget of characters, counting each
span with its resource and scope and every value and container at a minimum cost, the request is
refused whole with ``DecodedTooLarge``, a 413). Values are decoded once, into the shapes the OTel
SDK itself holds (arrays as tuples, key-value lists as dicts, bytes as bytes), never into JSON
text: the store's row encoder encodes each of them once. (Before, each key-value list was JSON
text re-escaped inside its parent's: 30 nested levels in a 753-byte request made gigabytes.)

Both encodings are read by one walker (``_walk``) through a small ``Format``. Protobuf: the
three levels of containers are read from the wire bytes under the budget, and each resource,
scope and span parsed by the generated classes (upb, in C); parsed whole, 16 MB of empty messages
took 22 s and 500 MB, now 0.7 s and nothing. OTLP/JSON: from ``json.loads``, by ``_otlp_json``
(protobuf's own JSON mapping took 44 s for 15 MB of empty objects, with no way to stop it early).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple, Protocol

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from ._errors import ConfigurationError

# Levels of arrays and key-value lists in one attribute value (the attribute itself is level 1).
# OTel SDKs write flat attributes, GenAI messages as structured values need 5 or 6 levels.
MAX_DEPTH = 16
DEEP_MARKER = f"[finetuner: value nested deeper than {MAX_DEPTH} levels, left out]"
# What one decoded value, and one span or resource or scope container, costs beyond its
# characters: about the memory of its Python object, so that millions of empty ones (2 bytes
# each on the wire) stop the walk early. A real span's values cost about their size on the wire.
VALUE_COST = 32
SPAN_COST = 128

_KINDS = {
    1: SpanKind.INTERNAL,
    2: SpanKind.SERVER,
    3: SpanKind.CLIENT,
    4: SpanKind.PRODUCER,
    5: SpanKind.CONSUMER,
}
_STATUS = {0: StatusCode.UNSET, 1: StatusCode.OK, 2: StatusCode.ERROR}
_ZERO_TRACE, _ZERO_SPAN = bytes(16), bytes(8)
JSON_TYPES = ("application/json",)
PROTOBUF_TYPES = ("application/x-protobuf", "application/protobuf", "")


class BadPayload(ValueError):
    """The request body is not an OTLP trace export (a 400, with this message)."""


class DecodedTooLarge(Exception):
    """The decoded request is over its budget of characters (a 413)."""

    def __init__(self, budget: int, message: str | None = None) -> None:
        super().__init__(message or f"the decoded request is over {budget} characters")
        self.budget = budget

    @classmethod
    def of_containers(cls, containers: int, size: int, per: int) -> DecodedTooLarge:
        return cls(
            size // per,
            f"the decoded request is over its size: {containers} JSON objects and arrays in "
            f"{size} bytes, more than one in {per} bytes",
        )


def _proto() -> Any:
    try:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    except ImportError:
        raise ConfigurationError(
            "finetuner serve needs opentelemetry-proto: pip install 'finetuner-otel[serve]'"
        ) from None
    return trace_service_pb2


def check_available() -> None:
    """Raise ConfigurationError now, naming the extra, if protobuf decoding is missing."""
    _proto()


def empty_response() -> bytes:
    """An ``ExportTraceServiceResponse`` with nothing rejected, serialized."""
    return bytes(_proto().ExportTraceServiceResponse().SerializeToString())


class Budget:
    """Characters left to decode; ``spend`` raises DecodedTooLarge past the end."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.left = budget

    def spend(self, cost: int) -> None:
        self.left -= cost
        if self.left < 0:
            raise DecodedTooLarge(self.budget)


class SpanFields(NamedTuple):
    """One span as read from the wire, its attributes decoded."""

    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes
    name: str
    kind: int
    start: int
    end: int
    attributes: dict[str, Any]
    status_code: int
    status_message: str


class Format(Protocol):
    """How one encoding reads the levels of an export; each call spends from the budget."""

    def resource_spans(self, request: Any) -> Iterable[Any]: ...
    def resource_attributes(self, resource_spans: Any) -> dict[str, Any]: ...
    def scope_spans(self, resource_spans: Any) -> Iterable[Any]: ...
    def scope(self, scope_spans: Any) -> tuple[str, str]: ...
    def spans(self, scope_spans: Any) -> Iterable[Any]: ...
    def span(self, span: Any) -> SpanFields: ...


_FIXED_SIZES = {1: 8, 5: 4}  # wire types fixed64 and fixed32


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    """The varint at ``position`` and the position after it."""
    value = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise BadPayload("not an OTLP trace export: a varint runs past the body")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


@functools.cache
def _message_types() -> tuple[Any, Any, Any]:
    """The generated classes of a resource, a scope and a span."""
    _proto()  # the extra's error, if it is missing
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope as Scope
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ResourceMessage
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    return ResourceMessage, Scope, Span


def _parse(message_type: Any, payloads: Iterable[memoryview]) -> Any:
    """One message from its occurrences' payloads (several merge, as protobuf's own do)."""
    try:
        return message_type.FromString(b"".join(payloads))
    except Exception as exc:  # protobuf's DecodeError, a depth past its limit: the sender's
        raise BadPayload(
            f"not an OTLP trace export: {type(exc).__name__}: {str(exc)[:300]}"
        ) from None


class _Protobuf:
    """An export read from its protobuf wire bytes: the three levels of containers by
    ``fields`` (lazily, under the budget), each resource, scope and span by protobuf (upb)."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.types = _message_types()

    def value(self, any_value: Any, depth: int = 1) -> Any:
        kind = any_value.WhichOneof("value")
        self.budget.spend(VALUE_COST)
        if kind is None:
            return None
        if kind in ("array_value", "kvlist_value") and depth >= MAX_DEPTH:
            self.budget.spend(len(DEEP_MARKER))
            return DEEP_MARKER
        if kind == "array_value":
            return tuple(self.value(v, depth + 1) for v in any_value.array_value.values)
        if kind == "kvlist_value":
            out = {}
            for kv in any_value.kvlist_value.values:
                self.budget.spend(len(kv.key))
                out[kv.key] = self.value(kv.value, depth + 1)
            return out
        if kind == "string_value":
            text: str = any_value.string_value
            self.budget.spend(len(text))
            return text
        if kind == "bytes_value":
            data: bytes = any_value.bytes_value
            self.budget.spend(len(data) * 4 // 3)  # stored as base64
            return data
        return getattr(any_value, kind)  # bool, int, double

    def attributes(self, key_values: Any) -> dict[str, Any]:
        out = {}
        for kv in key_values:
            self.budget.spend(len(kv.key))
            value = self.value(kv.value)
            if value is not None and kv.key:
                out[kv.key] = value
        return out

    def resource_spans(self, request: Any) -> Iterable[Any]:
        return self.fields(request, 1)  # ExportTraceServiceRequest.resource_spans

    def resource_attributes(self, resource_spans: Any) -> dict[str, Any]:
        resource = _parse(self.types[0], self.fields(resource_spans, 1))
        return self.attributes(resource.attributes)

    def scope_spans(self, resource_spans: Any) -> Iterable[Any]:
        return self.fields(resource_spans, 2)  # ResourceSpans.scope_spans

    def scope(self, scope_spans: Any) -> tuple[str, str]:
        scope = _parse(self.types[1], self.fields(scope_spans, 1))
        return scope.name, scope.version

    def spans(self, scope_spans: Any) -> Iterable[Any]:
        for raw in self.fields(scope_spans, 2):  # ScopeSpans.spans
            yield _parse(self.types[2], (raw,))

    def fields(self, message: memoryview, number: int) -> Iterator[memoryview]:
        """The payloads of length-delimited field ``number`` of one message's wire bytes, read
        without parsing the rest; each field read costs VALUE_COST, so that millions of empty
        messages (2 bytes each) stop the walk before protobuf ever holds them (parsed whole, it
        took 32 bytes of memory a byte of them)."""
        position, end = 0, len(message)
        while position < end:
            self.budget.spend(VALUE_COST)
            tag, position = _varint(message, position)
            wire_type = tag & 7
            if wire_type == 2:
                size, position = _varint(message, position)
                if position + size > end:
                    raise BadPayload("not an OTLP trace export: a field runs past its message")
                if tag >> 3 == number:
                    yield message[position : position + size]
                position += size
            elif wire_type in _FIXED_SIZES:
                position += _FIXED_SIZES[wire_type]
            elif wire_type == 0:
                position = _varint(message, position)[1]
            else:
                raise BadPayload(f"not an OTLP trace export: protobuf wire type {wire_type}")
        if position != end:
            raise BadPayload("not an OTLP trace export: the last field runs past the body")

    def span(self, span: Any) -> SpanFields:
        return SpanFields(
            trace_id=bytes(span.trace_id),
            span_id=bytes(span.span_id),
            parent_span_id=bytes(span.parent_span_id),
            name=span.name,
            kind=span.kind,
            start=span.start_time_unix_nano,
            end=span.end_time_unix_nano,
            attributes=self.attributes(span.attributes),
            status_code=span.status.code,
            status_message=span.status.message,
        )


def _readable(fields: SpanFields, resource: Resource, scope: InstrumentationScope) -> ReadableSpan:
    name = fields.name
    if len(fields.trace_id) != 16 or len(fields.span_id) != 8:
        raise BadPayload(
            f"span {name[:80]!r} has a trace id of {len(fields.trace_id)} bytes and a span id "
            f"of {len(fields.span_id)} bytes; OTLP ids are 16 and 8 bytes"
        )
    if fields.trace_id == _ZERO_TRACE or fields.span_id == _ZERO_SPAN:
        raise BadPayload(f"span {name[:80]!r} has an all-zero (invalid) trace or span id")
    trace_id = int.from_bytes(fields.trace_id, "big")
    context = SpanContext(
        trace_id,
        int.from_bytes(fields.span_id, "big"),
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    parent_id = fields.parent_span_id
    parent = (
        SpanContext(trace_id, int.from_bytes(parent_id, "big"), True)
        if len(parent_id) == 8 and parent_id != _ZERO_SPAN
        else None
    )
    return ReadableSpan(
        name=name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=fields.attributes,
        kind=_KINDS.get(fields.kind, SpanKind.INTERNAL),
        status=Status(
            _STATUS.get(fields.status_code, StatusCode.UNSET), fields.status_message or None
        ),
        start_time=fields.start,
        end_time=fields.end or fields.start,
        instrumentation_scope=scope,
    )


def _walk(request: Any, form: Format, budget: Budget) -> list[ReadableSpan]:
    """The spans of an export; each pays for its resource and scope too (a row may carry
    them), and each container costs SPAN_COST, so that empty ones cannot be sent by millions.
    A resource or scope is read on its first span: an empty container costs no more."""
    spans: list[ReadableSpan] = []
    for resource_spans in form.resource_spans(request):
        budget.spend(SPAN_COST)
        resource: Resource | None = None
        resource_cost = 0
        for scope_spans in form.scope_spans(resource_spans):
            budget.spend(SPAN_COST)
            scope: InstrumentationScope | None = None
            scope_cost = 0
            for span in form.spans(scope_spans):
                if resource is None:
                    before = budget.left
                    resource = Resource(form.resource_attributes(resource_spans))
                    resource_cost = before - budget.left
                if scope is None:
                    name, version = form.scope(scope_spans)
                    scope = InstrumentationScope(name, version or None)
                    scope_cost = len(name) + len(version)
                budget.spend(SPAN_COST + resource_cost + scope_cost)
                fields = form.span(span)
                budget.spend(len(fields.name) + len(fields.status_message))
                spans.append(_readable(fields, resource, scope))
    return spans
