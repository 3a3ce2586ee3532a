"""A finished GenAI span read into decoded values (a ``CallRecord``) for the store's encoder.

Keys on GenAI semantic-convention attributes only, so spans from other instrumentations (the
contrib OpenAI instrumentation, OpenLLMetry) become rows too when they carry message content.
Nothing of a span's text reaches a spool line unparsed, whatever scope the span names: its JSON
attributes are parsed here and the row is written by ``encode_row``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from finetuner_otel import _encoded
from finetuner_otel import _semconv as sc
from finetuner_otel._ownership import traced_by_us_too
from finetuner_otel._redact import Redactor
from finetuner_otel.store.spool import CallRecord, JSONValue, encode_row, known_json, parse_json

# Attributes stored in columns of their own, and so left out of the ``attributes`` column.
_COLUMN_ATTRIBUTES = frozenset(
    {
        sc.OPERATION_NAME,
        sc.PROVIDER_NAME,
        sc.REQUEST_MODEL,
        sc.RESPONSE_MODEL,
        sc.RESPONSE_ID,
        sc.RESPONSE_FINISH_REASONS,
        sc.USAGE_INPUT_TOKENS,
        sc.USAGE_OUTPUT_TOKENS,
        sc.INPUT_MESSAGES,
        sc.OUTPUT_MESSAGES,
        sc.SYSTEM_INSTRUCTIONS,
        sc.TOOL_DEFINITIONS,
        sc.DATASET,
        sc.REQUEST_OPTIONS,
        sc.ERROR_TYPE,
    }
)
# Content attributes that hold semconv messages (or parts), redacted part by part so that
# images and files (base64, URLs) are left as they are; the others are redacted string by string.
_MESSAGE_ATTRIBUTES = (sc.INPUT_MESSAGES, sc.OUTPUT_MESSAGES, sc.SYSTEM_INSTRUCTIONS)
_CONTENT_ATTRIBUTES = (*_MESSAGE_ATTRIBUTES, sc.TOOL_DEFINITIONS, sc.REQUEST_OPTIONS)
# Not redacted as text: the content (redacted once parsed) and the operation (a known name).
_NOT_TEXT = frozenset({*_CONTENT_ATTRIBUTES, sc.OPERATION_NAME})

# The GenAI operations that are one model call with messages in and out (not agents, tools or
# embeddings): the calls a chat fine-tuning dataset is made of.
_CALL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
OUR_SCOPE = "finetuner_otel.instrumentation"


def is_genai_span(span: ReadableSpan) -> bool:
    """A model call span, from our instrumentor or any other that follows the GenAI conventions;
    not a second record of a call that ours traced too."""
    attrs = span.attributes or {}
    operation = attrs.get(sc.OPERATION_NAME)
    if not isinstance(operation, str) or operation not in _CALL_OPERATIONS:
        return False  # also any value a receiver decoded that is not text (a kvlist, a list)
    scope = span.instrumentation_scope
    if scope is not None and scope.name == OUR_SCOPE:
        return True
    ctx = span.get_span_context()
    start = span.start_time or 0
    return ctx is None or not traced_by_us_too(
        ctx.trace_id,
        start,
        span.end_time or start,
        attrs.get(sc.REQUEST_MODEL),
        attrs.get(sc.RESPONSE_ID),
    )


def _copy(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """One plain copy of a span's attributes. The SDK's (a read-only view of its
    BoundedAttributes) copy at C speed: ``dict()`` of the view took a lock per key, a twelfth
    of the whole line's cost."""
    if attributes is None:
        return {}
    copy = getattr(attributes, "copy", None)
    copied = copy() if copy is not None else None
    return copied if type(copied) is dict else dict(attributes)


def _parsed(attrs: Mapping[str, Any], key: str) -> JSONValue | None:
    """A JSON content attribute, parsed (None if it is missing or is not JSON)."""
    raw = attrs.get(key)
    return parse_json(raw) if isinstance(raw, str) else None


def _parsed_ours(attrs: Mapping[str, Any], key: str) -> JSONValue | None:
    """``_parsed`` for a span of our instrumentation in this process: a text it encoded is not
    parsed back (``finetuner_otel._encoded``: the very string object, not an equal one)."""
    raw = attrs.get(key)
    if not isinstance(raw, str):
        return None
    known, value = _encoded.take(raw)
    if known:
        kept = known_json(raw, value)
        if kept is not None:
            return kept
    return parse_json(raw)


def _redacted_attribute(redactor: Redactor, value: Any) -> Any:
    if isinstance(value, str):
        return redactor.text(value)
    if isinstance(value, tuple | list | Mapping):  # received OTLP arrays and kvlists too
        return redactor.value(value)
    return value


def _redacted(
    redactor: Redactor, attrs: Mapping[str, Any], content: dict[str, Any]
) -> dict[str, Any]:
    """A foreign span's attributes with their text redacted; its parsed ``content`` in place
    (as plain values, written afresh by the encoder)."""
    for key, parsed in content.items():
        value = parsed.value if parsed is not None else None
        if key in _MESSAGE_ATTRIBUTES and isinstance(value, list):
            content[key] = redactor.messages(value)
        else:
            content[key] = redactor.value(value)
    return {k: v if k in _NOT_TEXT else _redacted_attribute(redactor, v) for k, v in attrs.items()}


def span_record(span: ReadableSpan, redactor: Redactor | None = None) -> CallRecord:
    """The decoded values of one GenAI span. ``redactor`` is applied to every content and
    string attribute of a span that is not our instrumentation's (ours are redacted already)."""
    scope = span.instrumentation_scope
    scope_name = scope.name if scope is not None else None
    attrs: Mapping[str, Any] = _copy(span.attributes)
    parsed = _parsed_ours if scope_name == OUR_SCOPE else _parsed
    content = {key: parsed(attrs, key) for key in _CONTENT_ATTRIBUTES}
    status = span.status
    error = status.status_code is StatusCode.ERROR
    error_message = status.description if error else None
    if redactor is not None and scope_name != OUR_SCOPE:
        attrs = _redacted(redactor, attrs, content)
        if error_message is not None:
            error_message = redactor.text(error_message)
    ctx = span.get_span_context()
    parent = span.parent
    finish = attrs.get(sc.RESPONSE_FINISH_REASONS)
    start = span.start_time or 0
    resource = span.resource.attributes if span.resource is not None else {}
    return CallRecord(
        trace_id=ctx.trace_id if ctx is not None else 0,
        span_id=ctx.span_id if ctx is not None else 0,
        start_ns=start,
        end_ns=span.end_time or start,
        parent_span_id=parent.span_id if parent is not None else None,
        dataset=attrs.get(sc.DATASET),
        operation=attrs.get(sc.OPERATION_NAME),
        provider=attrs.get(sc.PROVIDER_NAME) or attrs.get(sc.LEGACY_SYSTEM),
        request_model=attrs.get(sc.REQUEST_MODEL),
        response_model=attrs.get(sc.RESPONSE_MODEL),
        response_id=attrs.get(sc.RESPONSE_ID),
        status="error" if error else "incomplete" if attrs.get(sc.INCOMPLETE) else "ok",
        error_type=attrs.get(sc.ERROR_TYPE) if error else None,
        error_message=error_message,
        finish_reasons=[str(r) for r in finish] if isinstance(finish, list | tuple) else None,
        input_tokens=attrs.get(sc.USAGE_INPUT_TOKENS),
        output_tokens=attrs.get(sc.USAGE_OUTPUT_TOKENS),
        request_options=content[sc.REQUEST_OPTIONS],
        input_messages=content[sc.INPUT_MESSAGES],
        output_messages=content[sc.OUTPUT_MESSAGES],
        system_instructions=content[sc.SYSTEM_INSTRUCTIONS],
        tool_definitions=content[sc.TOOL_DEFINITIONS],
        service_name=resource.get("service.name"),
        scope_name=scope_name,
        attributes={k: v for k, v in attrs.items() if k not in _COLUMN_ATTRIBUTES},
    )


def span_to_line(span: ReadableSpan, redactor: Redactor | None = None) -> str:
    """The spool line (one ``calls`` row) of one GenAI span: decoded, then encoded by the
    store's one encoder. Runs on the export thread of the user's process for every span."""
    return encode_row(span_record(span, redactor))
