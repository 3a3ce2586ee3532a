"""``decode_request``: an OTLP trace export, protobuf or OTLP/JSON, as SDK ``ReadableSpan``s.

The one entry to decoding: it picks the encoding by content type and runs the one walker of
``_otlp`` over the form that reads it (``_otlp``'s protobuf form, ``_otlp_json``'s JSON form),
both under the same budget. Kept apart so that the two forms import ``_otlp`` and not each other.
"""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan

from ._otlp import JSON_TYPES, PROTOBUF_TYPES, BadPayload, Budget, _Protobuf, _walk
from ._otlp_json import Json, load


def decode_request(body: bytes, content_type: str, budget: int) -> list[ReadableSpan]:
    """The spans of a protobuf or OTLP/JSON trace export, as SDK ReadableSpans. Raises
    BadPayload (with the reason) or DecodedTooLarge (past ``budget`` characters)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    spend = Budget(budget)
    if kind in JSON_TYPES:
        return _walk(load(body), Json(spend), spend)
    if kind not in PROTOBUF_TYPES:
        raise BadPayload(
            f"unsupported content-type {content_type!r}; send application/x-protobuf or "
            f"application/json"
        )
    return _walk(memoryview(body), _Protobuf(spend), spend)
