"""A finished GenAI span as one row of the ``calls`` table.

Keys on GenAI semantic-convention attributes only, so spans from other instrumentations (the
contrib OpenAI instrumentation, OpenLLMetry) become rows too when they carry message content.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from .. import _semconv as sc
from .._json import dumps
from .._ownership import traced_by_us_too
from .._settings import DEFAULT_DATASET

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


# The GenAI operations that are one model call with messages in and out (not agents, tools or
# embeddings): the calls a chat fine-tuning dataset is made of.
_CALL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
OUR_SCOPE = "finetuner_otel.instrumentation"


def is_genai_span(span: ReadableSpan) -> bool:
    """A model call span, from our instrumentor or any other that follows the GenAI conventions;
    not a second record of a call that ours traced too."""
    attrs = span.attributes
    if not attrs or attrs.get(sc.OPERATION_NAME) not in _CALL_OPERATIONS:
        return False
    scope = span.instrumentation_scope
    if scope is not None and scope.name == OUR_SCOPE:
        return True
    ctx = span.get_span_context()
    start = span.start_time or 0
    return ctx is None or not traced_by_us_too(
        ctx.trace_id, start, span.end_time or start, attrs.get(sc.REQUEST_MODEL)
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN/Infinity: Python reads them, DuckDB does not


# Strict: what it accepts, DuckDB's JSON reader accepts too.
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _content(attrs: Mapping[str, Any], key: str) -> tuple[Any, str]:
    """A JSON content attribute, parsed, and as JSON text fit for one spool line ("null" if none).

    The attribute's own text is reused when it is already compact enough for JSONL (no line
    breaks), which saves encoding the largest values of the span a second time.
    """
    raw = attrs.get(key)
    if not isinstance(raw, str):
        return None, "null"
    try:
        value = _DECODER.decode(raw)
    except ValueError:
        return None, "null"
    if "\n" in raw or "\r" in raw or "\\ud" in raw or "\\uD" in raw:
        # Line breaks would split the JSONL record; an escaped surrogate may be a lone one,
        # which DuckDB rejects. Written afresh, a lone surrogate becomes U+FFFD on the way out.
        return value, dumps(value)
    return value, raw


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat()


_CONTENT_PARTS = frozenset({"uri", "blob", "file"})


def _has_input(input_messages: Any, system_instructions: Any) -> bool:
    if not isinstance(input_messages, list):
        return False
    return bool(system_instructions) or any(isinstance(m, dict) for m in input_messages)


def _has_completion(output_messages: Any) -> bool:
    """Whether the first choice (the training target) has text, tool calls or other content."""
    if not isinstance(output_messages, list) or not output_messages:
        return False
    first = output_messages[0]
    if not isinstance(first, dict):
        return False
    for part in first.get("parts") or ():
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            if part.get("content"):
                return True
        elif kind == "tool_call" or kind in _CONTENT_PARTS or isinstance(part.get("openai"), dict):
            return True
    return False


def span_to_line(span: ReadableSpan) -> str:
    """The ``calls`` row for one GenAI span as one spool line: a JSON object whose keys are
    exactly the ingest columns (see the schema for what each column means).

    This runs on the export thread of the user's process for every span, so it does the least
    work it can: content attributes are parsed once and their JSON text is reused as it is.
    """
    attrs = dict(span.attributes or {})
    ctx = span.get_span_context()
    trace_id = format(ctx.trace_id, "032x")  # type: ignore[union-attr]
    span_id = format(ctx.span_id, "016x")  # type: ignore[union-attr]
    parent = span.parent
    status = span.status
    error = status.status_code is StatusCode.ERROR
    state = "error" if error else "incomplete" if attrs.get(sc.INCOMPLETE) else "ok"

    scope = span.instrumentation_scope
    output_messages, output_json = _content(attrs, sc.OUTPUT_MESSAGES)
    system_instructions, system_json = _content(attrs, sc.SYSTEM_INSTRUCTIONS)
    raw_input = attrs.get(sc.INPUT_MESSAGES)
    if scope is not None and scope.name == OUR_SCOPE and type(raw_input) is str:
        # Our own encoder wrote it (compact, no raw line breaks, no escaped surrogates), as a
        # list of message objects: the largest value of the span needs no second reading.
        input_json = raw_input
        has_input = raw_input != "[]" or bool(system_instructions)
    else:
        input_messages, input_json = _content(attrs, sc.INPUT_MESSAGES)
        has_input = _has_input(input_messages, system_instructions)
    _, tools_json = _content(attrs, sc.TOOL_DEFINITIONS)
    _, options_json = _content(attrs, sc.REQUEST_OPTIONS)
    finish_reasons = attrs.get(sc.RESPONSE_FINISH_REASONS)
    finish_list = (
        [str(r) for r in finish_reasons] if isinstance(finish_reasons, list | tuple) else None
    )
    reason = _untrainable_reason(
        state,
        attrs,
        has_input,
        _has_completion(output_messages),
        finish_list or [],
    )
    start = span.start_time or 0
    end = span.end_time or start
    resource = span.resource.attributes if span.resource is not None else {}
    service = resource.get("service.name")
    extra = {k: v for k, v in attrs.items() if k not in _COLUMN_ATTRIBUTES}
    # The span's identity, and its start time: OTel draws ids from the global `random` module,
    # so an app that seeds it (as ML code often does) makes the same ids in every run; with the
    # time in the key, those calls are not taken for repeats of each other.
    row_id = f"{trace_id}{span_id}{start:016x}"
    # Written field by field rather than through one dumps() of a dict: this is the hottest
    # loop of the export thread. Keys and order are INGEST_COLUMNS (a test holds them equal).
    return "".join(
        (
            '{"id":"',
            row_id,
            '","trace_id":"',
            trace_id,
            '","span_id":"',
            span_id,
            '","parent_span_id":',
            f'"{parent.span_id:016x}"' if parent is not None else "null",
            ',"dataset":',
            _text(str(attrs.get(sc.DATASET) or DEFAULT_DATASET)),
            ',"operation":',
            _text(attrs.get(sc.OPERATION_NAME)),
            ',"provider":',
            _text(attrs.get(sc.PROVIDER_NAME) or attrs.get(sc.LEGACY_SYSTEM)),
            ',"request_model":',
            _text(attrs.get(sc.REQUEST_MODEL)),
            ',"response_model":',
            _text(attrs.get(sc.RESPONSE_MODEL)),
            ',"response_id":',
            _text(attrs.get(sc.RESPONSE_ID)),
            ',"started_at":"',
            _iso(start),
            '","ended_at":"',
            _iso(end),
            '","duration_ms":',
            repr((end - start) / 1e6),
            ',"status":"',
            state,
            '","error_type":',
            _text(attrs.get(sc.ERROR_TYPE) if error else None),
            ',"error_message":',
            _text(status.description if error else None),
            ',"finish_reasons":',
            "null" if finish_list is None else dumps(finish_list),
            ',"input_tokens":',
            _number(attrs.get(sc.USAGE_INPUT_TOKENS)),
            ',"output_tokens":',
            _number(attrs.get(sc.USAGE_OUTPUT_TOKENS)),
            ',"request_options":',
            options_json,
            ',"input_messages":',
            input_json,
            ',"output_messages":',
            output_json,
            ',"system_instructions":',
            system_json,
            ',"tool_definitions":',
            tools_json,
            ',"trainable":',
            "true" if reason is None else "false",
            ',"untrainable_reason":',
            _text(reason),
            ',"service_name":',
            _text(service),
            ',"scope_name":',
            _text(scope.name if scope is not None else None),
            ',"attributes":',
            dumps(extra) if extra else "{}",
            "}",
        )
    )


_encode_string: Callable[[str], str] = json.encoder.encode_basestring


def _text(value: Any) -> str:
    """A JSON string (or null) for a text column; other types are written as their JSON text."""
    if value is None:
        return "null"
    return _encode_string(value if isinstance(value, str) else dumps(value))


def _number(value: Any) -> str:
    return str(value) if type(value) is int else "null"


def _untrainable_reason(
    status: str,
    attrs: Mapping[str, Any],
    has_input: bool,
    has_completion: bool,
    finish_reasons: list[str],
) -> str | None:
    if status == "error":
        return "the call failed"
    if status == "incomplete":
        return "the stream ended before its last event"
    purpose = attrs.get(sc.PURPOSE)
    if purpose == "eval":
        return "an evaluation call"
    if purpose:  # e.g. "synthetic": a call made to write training data, not an example
        return f"a {purpose} tooling call (finetuner.purpose)"
    if attrs.get(sc.CONTENT_OMITTED):
        return "content over the size cap was left out (FINETUNER_MAX_CONTENT_SIZE)"
    if attrs.get(sc.CAPTURE_ERROR):
        return f"capture failed ({attrs[sc.CAPTURE_ERROR]})"
    if not has_input:
        return "no input messages were recorded"
    if not has_completion:
        return "no completion was recorded"
    if finish_reasons and finish_reasons[0] in _CUT_OFF:
        return _CUT_OFF[finish_reasons[0]]
    return None
