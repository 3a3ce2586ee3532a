"""OTLP trace exports (protobuf or OTLP/JSON) decoded into SDK ``ReadableSpan``\\ s, bounded.

A sender chooses every byte of a request, so decoding is bounded in the two ways a small request
can grow: in depth (an ``AnyValue`` nested deeper than ``MAX_DEPTH`` levels is replaced by
``DEEP_MARKER``, and the span is kept) and in size (a request whose decoded spans, each counted
with its resource and scope, come to more than ``budget`` characters is refused whole with
``DecodedTooLarge``, a 413). Values are decoded once, into the shapes the OTel SDK itself holds
(arrays as tuples, key-value lists as dicts, bytes as bytes), and never into JSON text: the store's
row encoder encodes each of them once. (Before, each key-value list was JSON text re-escaped inside
its parent's: 30 nested levels in a 753-byte request made gigabytes.)
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from typing import Any

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
# What one decoded value costs beyond its characters, so that millions of empty values count.
VALUE_COST = 8
SPAN_COST = 64

_KINDS = {
    1: SpanKind.INTERNAL,
    2: SpanKind.SERVER,
    3: SpanKind.CLIENT,
    4: SpanKind.PRODUCER,
    5: SpanKind.CONSUMER,
}
_STATUS = {0: StatusCode.UNSET, 1: StatusCode.OK, 2: StatusCode.ERROR}
_ZERO_TRACE, _ZERO_SPAN = bytes(16), bytes(8)


class BadPayload(ValueError):
    """The request body is not an OTLP trace export (a 400, with this message)."""


class DecodedTooLarge(Exception):
    """The decoded request is over its budget of characters (a 413)."""

    def __init__(self, budget: int) -> None:
        super().__init__(f"the decoded request is over {budget} characters")
        self.budget = budget


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


def _dicts(parent: Any, key: str) -> Iterator[dict[str, Any]]:
    items = parent.get(key) if isinstance(parent, dict) else None
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict):
            yield item


def _hex_to_base64(obj: dict[str, Any], keys: Iterable[str]) -> None:
    for key in keys:
        value = obj.get(key)
        if isinstance(value, str) and value:
            try:
                obj[key] = base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError:
                raise BadPayload(f"{key} {value[:40]!r} is not hex") from None


def _json_ids(document: Any) -> Any:
    """OTLP/JSON writes ids as hex; protobuf's JSON mapping reads bytes as base64. Only the id
    fields of spans and their links are rewritten (walked by name, never by recursion)."""
    if not isinstance(document, dict):
        raise BadPayload("an OTLP/JSON trace export is an object with resourceSpans")
    for resource_spans in _dicts(document, "resourceSpans"):
        for scope_spans in _dicts(resource_spans, "scopeSpans"):
            for span in _dicts(scope_spans, "spans"):
                _hex_to_base64(span, ("traceId", "spanId", "parentSpanId"))
                for link in _dicts(span, "links"):
                    _hex_to_base64(link, ("traceId", "spanId"))
    return document


def parse_request(body: bytes, content_type: str) -> Any:
    """An ExportTraceServiceRequest from a protobuf or OTLP/JSON body."""
    pb = _proto()
    request = pb.ExportTraceServiceRequest()
    kind = content_type.split(";", 1)[0].strip().lower()
    try:
        if kind == "application/json":
            from google.protobuf import json_format

            # OTLP/JSON: receivers MUST ignore unknown fields (newer senders add some).
            document = _json_ids(json.loads(body))
            json_format.ParseDict(document, request, ignore_unknown_fields=True)
        elif kind in ("application/x-protobuf", "application/protobuf", ""):
            request.ParseFromString(body)
        else:
            raise BadPayload(
                f"unsupported content-type {content_type!r}; send application/x-protobuf or "
                f"application/json"
            )
    except BadPayload:
        raise
    except Exception as exc:  # protobuf's, json's and RecursionError: all the sender's doing
        message = str(exc)[:300]
        raise BadPayload(f"not an OTLP trace export: {type(exc).__name__}: {message}") from None
    return request


class _Decoder:
    """AnyValues to Python values, spending a budget of characters as it goes."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.left = budget

    def spend(self, cost: int) -> None:
        self.left -= cost
        if self.left < 0:
            raise DecodedTooLarge(self.budget)

    def value(self, any_value: Any, depth: int = 1) -> Any:
        kind = any_value.WhichOneof("value")
        self.spend(VALUE_COST)
        if kind is None:
            return None
        if kind in ("array_value", "kvlist_value") and depth >= MAX_DEPTH:
            self.spend(len(DEEP_MARKER))
            return DEEP_MARKER
        if kind == "array_value":
            return tuple(self.value(v, depth + 1) for v in any_value.array_value.values)
        if kind == "kvlist_value":
            out = {}
            for kv in any_value.kvlist_value.values:
                self.spend(len(kv.key))
                out[kv.key] = self.value(kv.value, depth + 1)
            return out
        if kind == "string_value":
            text: str = any_value.string_value
            self.spend(len(text))
            return text
        if kind == "bytes_value":
            data: bytes = any_value.bytes_value
            self.spend(len(data) * 4 // 3)  # stored as base64
            return data
        return getattr(any_value, kind)  # bool, int, double

    def attributes(self, key_values: Any) -> dict[str, Any]:
        out = {}
        for kv in key_values:
            self.spend(len(kv.key))
            value = self.value(kv.value)
            if value is not None and kv.key:
                out[kv.key] = value
        return out

    def cost_of(self, before: int) -> int:
        return before - self.left


def _span_id_bytes(span: Any) -> tuple[bytes, bytes]:
    trace_id, span_id = bytes(span.trace_id), bytes(span.span_id)
    if len(trace_id) != 16 or len(span_id) != 8:
        raise BadPayload(
            f"span {span.name[:80]!r} has a trace id of {len(trace_id)} bytes and a span id of "
            f"{len(span_id)} bytes; OTLP ids are 16 and 8 bytes"
        )
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        raise BadPayload(f"span {span.name[:80]!r} has an all-zero (invalid) trace or span id")
    return trace_id, span_id


def _span(
    span: Any, decoder: _Decoder, resource: Resource, scope: InstrumentationScope
) -> ReadableSpan:
    raw_trace, raw_span = _span_id_bytes(span)
    trace_id = int.from_bytes(raw_trace, "big")
    context = SpanContext(
        trace_id,
        int.from_bytes(raw_span, "big"),
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    parent_id = bytes(span.parent_span_id)
    parent = (
        SpanContext(trace_id, int.from_bytes(parent_id, "big"), True)
        if len(parent_id) == 8 and parent_id != _ZERO_SPAN
        else None
    )
    name: str = span.name
    message: str = span.status.message
    decoder.spend(SPAN_COST + len(name) + len(message))
    return ReadableSpan(
        name=name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=decoder.attributes(span.attributes),
        kind=_KINDS.get(span.kind, SpanKind.INTERNAL),
        status=Status(_STATUS.get(span.status.code, StatusCode.UNSET), message or None),
        start_time=span.start_time_unix_nano,
        end_time=span.end_time_unix_nano or span.start_time_unix_nano,
        instrumentation_scope=scope,
    )


def spans_of(request: Any, budget: int) -> list[ReadableSpan]:
    """The request's spans as SDK ReadableSpans, resource and scope included; raises
    BadPayload for a span without valid ids, DecodedTooLarge past ``budget`` characters (each
    span pays for its resource and scope as well: a row may carry them)."""
    decoder = _Decoder(budget)
    spans: list[ReadableSpan] = []
    for resource_spans in request.resource_spans:
        before = decoder.left
        resource = Resource(decoder.attributes(resource_spans.resource.attributes))
        resource_cost = decoder.cost_of(before)
        for scope_spans in resource_spans.scope_spans:
            name: str = scope_spans.scope.name
            version: str = scope_spans.scope.version
            scope = InstrumentationScope(name, version or None)
            scope_cost = len(name) + len(version)
            for span in scope_spans.spans:
                decoder.spend(resource_cost + scope_cost)
                spans.append(_span(span, decoder, resource, scope))
    return spans
