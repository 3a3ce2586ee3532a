"""OTLP/JSON read straight from ``json.loads``: the ``Format`` of ``_otlp`` for JSON bodies.

The protobuf JSON mapping as OTLP/JSON specifies it: lowerCamelCase keys (the proto names are
accepted too), trace and span ids as hex, enums as integers (or their names), 64-bit integers
as numbers or strings, bytes as base64, doubles as numbers or "NaN"/"Infinity"; unknown keys are
ignored, as receivers must. A value of the wrong type is a BadPayload naming the field.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterable
from typing import Any

from ._otlp import (
    DEEP_MARKER,
    MAX_DEPTH,
    VALUE_COST,
    BadPayload,
    Budget,
    DecodedTooLarge,
    SpanFields,
)

BYTES_PER_CONTAINER = 8
_INT64 = 2**63
_UINT64 = 2**64
_SPECIAL_DOUBLES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_KIND_NAMES = {
    f"SPAN_KIND_{name}": number
    for number, name in enumerate(
        ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
    )
}
_STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
# The fields of an AnyValue object, by either of their names.
_VALUE_KEYS = {
    name: camel
    for camel, snake in (
        ("stringValue", "string_value"),
        ("boolValue", "bool_value"),
        ("intValue", "int_value"),
        ("doubleValue", "double_value"),
        ("arrayValue", "array_value"),
        ("kvlistValue", "kvlist_value"),
        ("bytesValue", "bytes_value"),
    )
    for name in (camel, snake)
}


def _bad(message: str) -> BadPayload:
    return BadPayload(f"not an OTLP trace export: {message}")


def load(body: bytes) -> dict[str, Any]:
    """The JSON document of a body: an object, or BadPayload saying why not.

    ``json.loads`` makes a 64-byte dict of each 2-byte ``{}``: before it runs, a body with more
    than one ``{`` or ``[`` in ``BYTES_PER_CONTAINER`` bytes (counted in C, strings included, so
    an over-count) is refused as DecodedTooLarge. A real export has one in 20 to 40 bytes."""
    containers = body.count(b"{") + body.count(b"[")
    if containers > len(body) // BYTES_PER_CONTAINER + 1000:
        raise DecodedTooLarge.of_containers(containers, len(body), BYTES_PER_CONTAINER)
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise _bad(f"{type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(document, dict):
        raise _bad("an OTLP/JSON trace export is an object with resourceSpans")
    return document


def _get(obj: dict[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(f"{what} must be an object, got {type(value).__name__}")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(f"{what} must be an array, got {type(value).__name__}")
    return value


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(f"{what} must be a string, got {type(value).__name__}")
    return value


def _integer(value: Any, what: str, low: int, high: int) -> int:
    if value is None:
        return 0
    number: Any = value
    if isinstance(value, str):
        try:
            number = int(value)
        except ValueError:
            raise _bad(f"{what} must be an integer, got {value[:40]!r}") from None
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if type(number) is not int or not low <= number < high:
        raise _bad(f"{what} must be an integer in [{low}, {high}), got {str(value)[:40]!r}")
    return number


def _enum(value: Any, what: str, names: dict[str, int]) -> int:
    if isinstance(value, str) and value in names:
        return names[value]
    return _integer(value, what, -(2**31), 2**31)


def _double(value: Any, what: str) -> float:
    if isinstance(value, str) and value in _SPECIAL_DOUBLES:
        return _SPECIAL_DOUBLES[value]
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise _bad(f"{what} must be a number, got {str(value)[:40]!r}")


def _bytes(value: Any, what: str, *, hex_id: bool = False) -> bytes:
    text = _text(value, what)
    try:
        if hex_id:
            return bytes.fromhex(text)
        standard = text.replace("-", "+").replace("_", "/")  # either alphabet, as protobuf's
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (ValueError, binascii.Error):
        raise _bad(f"{what} {text[:40]!r} is not {'hex' if hex_id else 'base64'}") from None


def _one_value(obj: Any) -> tuple[str, Any] | None:
    """The one field an AnyValue object sets (camelCase name, raw value), or None if none."""
    present = [
        (_VALUE_KEYS[key], raw)
        for key, raw in _object(obj, "a value").items()
        if raw is not None and key in _VALUE_KEYS
    ]
    if len(present) > 1:
        raise _bad(f"a value sets more than one of {', '.join(k for k, _ in present)}")
    return present[0] if present else None


def _time(span: dict[str, Any], camel: str, snake: str) -> int:
    return _integer(_get(span, camel, snake), camel, 0, _UINT64)


class Json:
    """The ``Format`` of OTLP/JSON documents."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget

    def value(self, obj: Any, depth: int = 1) -> Any:
        self.budget.spend(VALUE_COST)
        present = _one_value(obj)
        if present is None:
            return None
        key, raw = present
        if key in ("arrayValue", "kvlistValue") and depth >= MAX_DEPTH:
            self.budget.spend(len(DEEP_MARKER))
            return DEEP_MARKER
        if key == "arrayValue":
            items = _list(_object(raw, key).get("values"), "arrayValue.values")
            return tuple(self.value(v, depth + 1) for v in items)
        if key == "kvlistValue":
            out = {}
            for kv in _list(_object(raw, key).get("values"), "kvlistValue.values"):
                name = _text(_object(kv, "a key-value").get("key"), "key")
                self.budget.spend(len(name))
                out[name] = self.value(kv.get("value"), depth + 1)
            return out
        if key == "stringValue":
            text = _text(raw, key)
            self.budget.spend(len(text))
            return text
        if key == "boolValue":
            if not isinstance(raw, bool):
                raise _bad(f"boolValue must be true or false, got {str(raw)[:40]!r}")
            return raw
        if key == "intValue":
            return _integer(raw, key, -_INT64, _INT64)
        if key == "doubleValue":
            return _double(raw, key)
        data = _bytes(raw, key)
        self.budget.spend(len(data) * 4 // 3)
        return data

    def attributes(self, items: Any) -> dict[str, Any]:
        out = {}
        for kv in _list(items, "attributes"):
            name = _text(_object(kv, "an attribute").get("key"), "an attribute's key")
            self.budget.spend(len(name))
            value = self.value(kv.get("value"))
            if value is not None and name:
                out[name] = value
        return out

    def resource_spans(self, request: Any) -> Iterable[Any]:
        return _list(_get(request, "resourceSpans", "resource_spans"), "resourceSpans")

    def resource_attributes(self, resource_spans: Any) -> dict[str, Any]:
        resource = _object(_object(resource_spans, "resourceSpans[]").get("resource"), "resource")
        return self.attributes(resource.get("attributes"))

    def scope_spans(self, resource_spans: Any) -> Iterable[Any]:
        resource_spans = _object(resource_spans, "resourceSpans[]")
        return _list(_get(resource_spans, "scopeSpans", "scope_spans"), "scopeSpans")

    def scope(self, scope_spans: Any) -> tuple[str, str]:
        scope = _object(_object(scope_spans, "scopeSpans[]").get("scope"), "scope")
        return _text(scope.get("name"), "scope.name"), _text(scope.get("version"), "scope.version")

    def spans(self, scope_spans: Any) -> Iterable[Any]:
        return _list(_object(scope_spans, "scopeSpans[]").get("spans"), "spans")

    def span(self, span: Any) -> SpanFields:
        span = _object(span, "spans[]")
        status = _object(span.get("status"), "status")
        return SpanFields(
            trace_id=_bytes(_get(span, "traceId", "trace_id"), "traceId", hex_id=True),
            span_id=_bytes(_get(span, "spanId", "span_id"), "spanId", hex_id=True),
            parent_span_id=_bytes(
                _get(span, "parentSpanId", "parent_span_id"), "parentSpanId", hex_id=True
            ),
            name=_text(span.get("name"), "name"),
            kind=_enum(span.get("kind"), "kind", _KIND_NAMES),
            start=_time(span, "startTimeUnixNano", "start_time_unix_nano"),
            end=_time(span, "endTimeUnixNano", "end_time_unix_nano"),
            attributes=self.attributes(span.get("attributes")),
            status_code=_enum(status.get("code"), "status.code", _STATUS_NAMES),
            status_message=_text(status.get("message"), "status.message"),
        )
