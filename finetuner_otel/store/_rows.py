"""A finished GenAI span as one row of the ``calls`` table.

Keys on GenAI semantic-convention attributes only, so spans from other instrumentations (the
contrib OpenAI instrumentation, OpenLLMetry) become rows too when they carry message content.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from .. import _semconv as sc
from .._json import dumps
from .._settings import DEFAULT_DATASET
from ._openai_format import to_openai_chat, to_openai_messages, to_openai_tools

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
_CUT_OFF = {
    "length": "the completion was cut off at the token limit (finish_reason=length)",
    "content_filter": "the completion was stopped by a content filter",
}


def is_genai_span(span: ReadableSpan) -> bool:
    attrs = span.attributes
    return bool(attrs) and sc.OPERATION_NAME in attrs  # type: ignore[operator]


def _json_attr(attrs: Mapping[str, Any], key: str) -> Any:
    value = attrs.get(key)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return None


def _iso(ns: int | None) -> str:
    return datetime.fromtimestamp((ns or 0) / 1e9, tz=timezone.utc).isoformat()


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def span_to_row(span: ReadableSpan) -> dict[str, Any]:
    """The ``calls`` row for one GenAI span (see the schema for what each column means)."""
    attrs: Mapping[str, Any] = span.attributes or {}
    ctx = span.get_span_context()
    trace_id = format(ctx.trace_id, "032x")  # type: ignore[union-attr]
    span_id = format(ctx.span_id, "016x")  # type: ignore[union-attr]
    parent = span.parent
    error = span.status.status_code is StatusCode.ERROR
    incomplete = bool(attrs.get(sc.INCOMPLETE))
    status = "error" if error else "incomplete" if incomplete else "ok"

    input_messages = _json_attr(attrs, sc.INPUT_MESSAGES)
    output_messages = _json_attr(attrs, sc.OUTPUT_MESSAGES)
    system_instructions = _json_attr(attrs, sc.SYSTEM_INSTRUCTIONS)
    tool_definitions = _json_attr(attrs, sc.TOOL_DEFINITIONS)

    messages = (
        to_openai_chat(input_messages, system_instructions)
        if isinstance(input_messages, list)
        else None
    )
    completion = None
    if isinstance(output_messages, list) and output_messages:
        # With n > 1 the first choice is the training target; every choice stays in
        # output_messages for SQL.
        first = output_messages[0]
        if isinstance(first, Mapping):
            converted = to_openai_messages({**first, "role": first.get("role") or "assistant"})
            completion = converted[0] if converted else None
    tools = to_openai_tools(tool_definitions) if isinstance(tool_definitions, list) else None
    finish_reasons = attrs.get(sc.RESPONSE_FINISH_REASONS)

    reason = _untrainable_reason(status, attrs, messages, completion, list(finish_reasons or ()))
    start, end = span.start_time or 0, span.end_time or span.start_time or 0
    resource = span.resource.attributes if span.resource is not None else {}
    scope = span.instrumentation_scope
    extra = {k: v for k, v in attrs.items() if k not in _COLUMN_ATTRIBUTES}
    return {
        "id": trace_id + span_id,
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": format(parent.span_id, "016x") if parent is not None else None,
        "dataset": str(attrs.get(sc.DATASET) or DEFAULT_DATASET),
        "operation": attrs.get(sc.OPERATION_NAME),
        "provider": attrs.get(sc.PROVIDER_NAME) or attrs.get(sc.LEGACY_SYSTEM),
        "request_model": attrs.get(sc.REQUEST_MODEL),
        "response_model": attrs.get(sc.RESPONSE_MODEL),
        "response_id": attrs.get(sc.RESPONSE_ID),
        "started_at": _iso(start),
        "ended_at": _iso(end),
        "duration_ms": (end - start) / 1e6,
        "status": status,
        "error_type": attrs.get(sc.ERROR_TYPE) if error else None,
        "error_message": span.status.description if error else None,
        "finish_reasons": list(finish_reasons) if finish_reasons is not None else None,
        "input_tokens": _int_or_none(attrs.get(sc.USAGE_INPUT_TOKENS)),
        "output_tokens": _int_or_none(attrs.get(sc.USAGE_OUTPUT_TOKENS)),
        "request_options": _json_attr(attrs, sc.REQUEST_OPTIONS),
        "input_messages": input_messages,
        "output_messages": output_messages,
        "system_instructions": system_instructions,
        "tool_definitions": tool_definitions,
        "messages": messages,
        "completion": completion,
        "tools": tools or None,
        "trainable": reason is None,
        "untrainable_reason": reason,
        "service_name": resource.get("service.name"),
        "scope_name": scope.name if scope is not None else None,
        "attributes": extra,
    }


def _untrainable_reason(
    status: str,
    attrs: Mapping[str, Any],
    messages: list[dict[str, Any]] | None,
    completion: dict[str, Any] | None,
    finish_reasons: list[str],
) -> str | None:
    if status == "error":
        return "the call failed"
    if status == "incomplete":
        return "the stream ended before its last event"
    if attrs.get(sc.PURPOSE) == "eval":
        return "an evaluation call"
    if attrs.get(sc.CAPTURE_ERROR):
        return f"capture failed ({attrs[sc.CAPTURE_ERROR]})"
    if not messages:
        return "no input messages were recorded"
    if completion is None or (not completion.get("content") and not completion.get("tool_calls")):
        return "no completion was recorded"
    if finish_reasons and finish_reasons[0] in _CUT_OFF:
        return _CUT_OFF[finish_reasons[0]]
    return None


def encode_row(row: Mapping[str, Any]) -> str:
    """One spool line: JSON columns are nested JSON values; read_json turns them back into JSON."""
    return dumps(row)
