"""``Call``: one stored call as the ``calls`` view shows it, with its latest review."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Call:
    """One call in the store (``store.get_call(id)``): what was asked and answered, in the GenAI
    semantic conventions' terms and in OpenAI's fine-tuning format (``messages``,
    ``completion``, ``tools``), with its metadata and the latest ``verdict`` (accept or
    reject) and ``correction`` people gave it. JSON columns are decoded."""

    id: str
    dataset: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    started_at: datetime
    duration_ms: float
    status: str  # ok | error | incomplete
    error_type: str | None
    error_message: str | None
    provider: str | None
    request_model: str | None
    response_model: str | None
    response_id: str | None
    finish_reasons: list[str] | None
    input_tokens: int | None
    output_tokens: int | None
    trainable: bool
    untrainable_reason: str | None
    service_name: str | None
    scope_name: str | None
    source: str  # captured | import | synthetic
    prompt_name: str | None
    prompt_version: str | None
    prompt_variables: dict[str, Any] | None
    request_options: dict[str, Any] | None
    attributes: dict[str, Any] | None
    messages: list[dict[str, Any]] | None
    completion: dict[str, Any] | None
    tools: list[dict[str, Any]] | None
    rationale: str | None
    answer: str | None
    verdict: str | None
    correction: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for JSON output)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


_FIELDS = tuple(f.name for f in dataclasses.fields(Call))
_FEEDBACK = ("verdict", "correction")
_JSON = frozenset(
    {
        "prompt_variables",
        "request_options",
        "attributes",
        "messages",
        "completion",
        "tools",
        "correction",
    }
)
# The query get_call runs: the calls view and the call's latest feedback, by exact id.
CALL_QUERY = (
    "SELECT "
    + ", ".join(f"f.{name}" if name in _FEEDBACK else f"c.{name}" for name in _FIELDS)
    + " FROM calls c LEFT JOIN call_feedback f ON f.call_id = c.id WHERE c.id = ?"
)


def load_call(row: Sequence[Any]) -> Call:
    values = {
        name: json.loads(value) if name in _JSON and isinstance(value, str) else value
        for name, value in zip(_FIELDS, row, strict=True)
    }
    if values["finish_reasons"] is not None:
        values["finish_reasons"] = list(values["finish_reasons"])
    return Call(**values)
