"""One recorded call, as decoded values, encoded as one spool line (one row of ``calls``).

``encode_row`` is the only writer of spool lines: the exporter (spans of any instrumentation,
local or received by ``finetuner serve``), the import of fine-tuning files and synthetic data all
hand it a ``CallRecord`` of plain Python values, never JSON text of their own. Every line is
written here with ``json``'s own encoder, which escapes line breaks, so no value a sender chose
can end a line early and start a row of its own.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .. import _semconv as sc
from .._errors import ConfigurationError
from .._json import dumps
from .._settings import DEFAULT_DATASET, check_dataset_name

# Beside the row, why a dataset name the call carried was not used (the row is kept, under the
# default dataset, rather than dropped).
DATASET_REFUSED = "finetuner.dataset_refused"

_CUT_OFF = {
    "length": "the completion was cut off at the token limit (finish_reason=length)",
    "content_filter": "the completion was stopped by a content filter",
}
_CONTENT_PARTS = frozenset({"uri", "blob", "file"})
_INT64 = 2**63


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN/Infinity: Python reads them, DuckDB does not


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: Python reads it as inf
        raise ValueError(f"{text} is out of range")
    return value


# Strict: what it accepts, DuckDB's JSON reader accepts too.
STRICT_JSON = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)
_scan: Callable[[str, int], tuple[Any, int]] = STRICT_JSON.scan_once  # type: ignore[attr-defined]
_WHITESPACE = " \t\n\r"  # JSON's (json.decoder.WHITESPACE)


class JSONValue:
    """A JSON attribute as ``parse_json`` read it: the value, and the text it was read from
    when that text can stand in a spool line as it is (which saves encoding the largest values
    of a span a second time). Only ``parse_json`` makes one."""

    __slots__ = ("_text", "value")

    def __init__(self, value: Any, text: str | None, key: object) -> None:
        if key is not _PARSED:
            raise TypeError("JSONValue is made by parse_json() only")
        self.value = value
        self._text = text


_PARSED = object()


def parse_json(raw: str) -> JSONValue | None:
    """``raw`` parsed strictly, or None when it is not JSON.

    Its text is kept only when it is provably safe in a line: the decoder took all of it as
    one complete JSON value (so nothing in it can close the row's object or set another of its
    keys), it holds no raw line break (lines are split on those, so it cannot start a row of
    its own), and no escaped surrogate (DuckDB refuses a lone one). Otherwise the encoder
    writes the parsed value afresh.
    """
    try:
        # The decoder's own scanner, without decode()'s Python around it: what follows the
        # value may only be whitespace, as decode() checks.
        value, end = _scan(raw, 0)
    except StopIteration:  # no value at 0: leading whitespace, or none at all
        try:
            value = STRICT_JSON.decode(raw)
        except (ValueError, RecursionError):
            return None
    except (ValueError, RecursionError):
        return None
    else:
        if end != len(raw) and raw[end:].strip(_WHITESPACE):
            return None
    return JSONValue(value, raw if _safe_in_line(raw) else None, _PARSED)


def _safe_in_line(raw: str) -> bool:
    """Whether the text of one JSON value can stand in a spool line as it is: no raw line break
    (lines are split on those) and no escaped surrogate (DuckDB refuses a lone one)."""
    return not ("\n" in raw or "\r" in raw or "\\ud" in raw or "\\uD" in raw)


def known_json(raw: str, value: Any) -> JSONValue | None:
    """``raw`` as a JSONValue of ``value`` without parsing it, for a text our instrumentation
    encoded from ``value`` (``finetuner_otel._encoded``: json's own encoder made it, so it is
    one complete JSON value), when it is safe in a line as it is: no raw line break, no
    escaped surrogate, and no NaN or Infinity (which json writes and DuckDB refuses; the words
    in a text count too, and such a text is then simply parsed). None: parse it instead."""
    if not _safe_in_line(raw) or "NaN" in raw or "Infinity" in raw:
        return None
    return JSONValue(value, raw, _PARSED)


def _value(content: Any) -> Any:
    return content.value if type(content) is JSONValue else content


def _content_text(content: Any) -> str:
    if content is None:
        return "null"
    if type(content) is JSONValue:
        return content._text if content._text is not None else json_text(content.value)
    return json_text(content)


@dataclass(slots=True)
class CallRecord:
    """One model call in decoded values: what a ``calls`` row is made of.

    The content fields hold parsed JSON values (lists of semconv messages, dicts), or what
    ``parse_json`` made of a JSON attribute; never JSON text. ``dataset`` is checked here,
    whatever its source: a refused name is recorded under the default dataset, with the reason
    in ``attributes``. ``attributes`` are the call's other attributes (``finetuner.purpose``,
    ``finetuner.capture_error``, ... decide trainability).
    """

    trace_id: int
    span_id: int
    start_ns: int
    end_ns: int
    parent_span_id: int | None = None
    dataset: object = None
    operation: object = None
    provider: object = None
    request_model: object = None
    response_model: object = None
    response_id: object = None
    status: str = "ok"  # ok | error | incomplete
    error_type: object = None
    error_message: object = None
    finish_reasons: list[str] | None = None
    input_tokens: object = None
    output_tokens: object = None
    request_options: Any = None
    input_messages: Any = None
    output_messages: Any = None
    system_instructions: Any = None
    tool_definitions: Any = None
    service_name: object = None
    scope_name: object = None
    attributes: Mapping[str, Any] = field(default_factory=dict)


def encode_row(record: CallRecord) -> str:
    """The spool line of one call: a JSON object whose keys are exactly the ingest columns
    (a test holds them equal to ``INGEST_COLUMNS``), with no raw line break in it."""
    start, end = record.start_ns, record.end_ns
    dataset, refused = _dataset(record.dataset)
    attributes = record.attributes
    if refused is not None:
        attributes = {**attributes, DATASET_REFUSED: refused}
    reason = _untrainable_reason(record, attributes)
    # Written field by field rather than through one dumps() of a dict: this is the hottest
    # loop of the export thread. Only fixed text, hex, numbers and json's escaped output here.
    return "".join(
        (
            _identity(record),
            ',"dataset":',
            _encode_string(dataset),
            ',"operation":',
            _text(record.operation),
            ',"provider":',
            _text(record.provider),
            ',"request_model":',
            _text(record.request_model),
            ',"response_model":',
            _text(record.response_model),
            ',"response_id":',
            _text(record.response_id),
            ',"started_at":"',
            _iso(start),
            '","ended_at":"',
            _iso(end),
            '","duration_ms":',
            repr((end - start) / 1e6),
            ',"status":',
            _encode_string(record.status),
            ',"error_type":',
            _text(record.error_type),
            ',"error_message":',
            _text(record.error_message),
            ',"finish_reasons":',
            _strings(record.finish_reasons),
            ',"input_tokens":',
            _number(record.input_tokens),
            ',"output_tokens":',
            _number(record.output_tokens),
            ',"request_options":',
            _content_text(record.request_options),
            ',"input_messages":',
            _content_text(record.input_messages),
            ',"output_messages":',
            _content_text(record.output_messages),
            ',"system_instructions":',
            _content_text(record.system_instructions),
            ',"tool_definitions":',
            _content_text(record.tool_definitions),
            ',"trainable":',
            "true" if reason is None else "false",
            ',"untrainable_reason":',
            _text(reason),
            ',"service_name":',
            _text(record.service_name),
            ',"scope_name":',
            _text(record.scope_name),
            ',"attributes":',
            json_text(attributes) if attributes else "{}",
            "}",
        )
    )


def _identity(record: CallRecord) -> str:
    """The row's first fields: its key and the span's ids."""
    trace_id = format(record.trace_id, "032x")
    span_id = format(record.span_id, "016x")
    parent = record.parent_span_id
    # The span's identity, and its start time: OTel draws ids from the global `random` module,
    # so an app that seeds it (as ML code often does) makes the same ids in every run; with the
    # time in the key, those calls are not taken for repeats of each other.
    return (
        f'{{"id":"{trace_id}{span_id}{record.start_ns:016x}","trace_id":"{trace_id}",'
        f'"span_id":"{span_id}","parent_span_id":'
        + (f'"{parent:016x}"' if parent is not None else "null")
    )


def _dataset(name: object) -> tuple[str, str | None]:
    """The dataset a row is stored under, and why the name it carried was refused (if it was)."""
    if name is None:
        return DEFAULT_DATASET, None
    try:
        return check_dataset_name(name), None
    except ConfigurationError as exc:
        return DEFAULT_DATASET, str(exc)


def _plain(value: Any) -> Any:
    """An SDK object, bytes or a set as plain JSON values, as the content encoder writes them."""
    return json.loads(dumps(value))


# Strict: NaN and Infinity are not JSON (DuckDB refuses them), so they never reach a line.
_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), default=_plain, allow_nan=False
)
_encode_string: Callable[[str], str] = json.encoder.encode_basestring


def json_text(value: Any) -> str:
    """``value`` as compact JSON that DuckDB reads: non-finite numbers become strings ("nan");
    a value json cannot encode at all (a circular one) becomes null."""
    try:
        return _ENCODER.encode(value)
    except ValueError:
        try:
            return _ENCODER.encode(_finite(value))
        except (ValueError, RecursionError):
            return "null"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _text(value: object) -> str:
    """A JSON string (or null) for a text column; other types are written as their JSON text."""
    if value is None:
        return "null"
    return _encode_string(value if isinstance(value, str) else json_text(value))


def _strings(values: list[str] | None) -> str:
    if values is None:
        return "null"
    return "[" + ",".join([_encode_string(v) for v in values]) + "]"


def _number(value: object) -> str:
    return str(value) if type(value) is int and -_INT64 <= value < _INT64 else "null"


def _iso(ns: int) -> str:
    """``datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat()``, a sixth as dear (two
    of them were a third of encode_row): the same rounding of the same float to microseconds,
    and the text of a whole second kept for the next call (a span's end is mostly in the
    second its start was)."""
    fraction, whole = math.modf(ns / 1e9)
    micro = round(fraction * 1e6)  # half to even, as datetime rounds
    if micro >= 1_000_000 or micro < 0 or whole < 0:
        return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat()
    second = int(whole)
    cached = _seconds.get(second)
    if cached is None:
        if len(_seconds) >= 64:
            _seconds.clear()
        cached = _seconds[second] = datetime.fromtimestamp(second, tz=timezone.utc).isoformat()
    if not micro:
        return cached
    return f"{cached[:-6]}.{micro:06d}+00:00"


_seconds: dict[int, str] = {}  # a whole second's ISO text (pure: the same second, the same text)


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
    parts = first.get("parts")
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            if part.get("content"):
                return True
        elif kind == "tool_call" or kind in _CONTENT_PARTS or isinstance(part.get("openai"), dict):
            return True
    return False


def _untrainable_reason(record: CallRecord, attrs: Mapping[str, Any]) -> str | None:
    if record.status == "error":
        return "the call failed"
    if record.status == "incomplete":
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
    if not _has_input(_value(record.input_messages), _value(record.system_instructions)):
        return "no input messages were recorded"
    if not _has_completion(_value(record.output_messages)):
        return "no completion was recorded"
    reasons = record.finish_reasons
    if reasons and reasons[0] in _CUT_OFF:
        return _CUT_OFF[reasons[0]]
    return None
