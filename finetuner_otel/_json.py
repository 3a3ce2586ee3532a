"""The one JSON encoder for captured content: compact, UTF-8, tolerant of SDK objects."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any


def _fallback(value: Any) -> Any:
    if isinstance(value, type):  # e.g. response_format=MyPydanticModel
        schema = getattr(value, "model_json_schema", None)
        return (
            {"type": "json_schema", "name": value.__name__, "schema": schema()}
            if schema
            else (value.__qualname__)
        )
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # pydantic models (the SDK's own types, user response formats)
        return dump(mode="json", exclude_unset=True)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return repr(value)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_fallback)
_SORTED_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), default=_fallback, sort_keys=True
)


def dumps(value: Any, *, sort_keys: bool = False) -> str:
    """Encode ``value`` as compact JSON, turning SDK objects and bytes into plain JSON values.
    ``sort_keys`` gives one text for equal values, for comparing them."""
    return (_SORTED_ENCODER if sort_keys else _ENCODER).encode(value)


_fell_back = threading.local()


def _noting_fallback(value: Any) -> Any:
    _fell_back.used = True
    return _fallback(value)


_NOTING_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), default=_noting_fallback
)


def dumps_noting(value: Any) -> tuple[str, bool]:
    """``dumps(value)``, and whether it is plain: encoded with no fallback (no SDK object, bytes,
    set or other value of no JSON type in it), so parsing the text gives ``value`` back (but
    for tuples, which parse back as lists)."""
    _fell_back.used = False
    text = _NOTING_ENCODER.encode(value)
    return text, not _fell_back.used
