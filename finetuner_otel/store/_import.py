"""Examples from an OpenAI chat fine-tuning file, as calls of a named dataset.

Each example becomes the same kind of row a captured call does: it is mapped to the GenAI
semantic-convention content by the instrumentation's own mapping and written by the store's one
row encoder (``encode_row``), so an imported example exports exactly as a captured one would.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import _semconv as sc
from .._parts import Parts, tool_definitions
from ._rows import CallRecord, encode_row

IMPORT_SCOPE = "finetuner_otel.import"
# An imported file is what its owner chose to train on: no content cap, whatever a capture in
# this process was set to.
_PARTS = Parts()
SOURCE = "finetuner.import.source"
SOURCE_SHA256 = "finetuner.import.sha256"
SOURCE_LINE = "finetuner.import.line"


def file_trace_id(sha256: str) -> int:
    """Every example of one file shares a trace id taken from the file's hash."""
    return int(sha256[:32], 16) or 1


def _message(message: Mapping[str, Any]) -> dict[str, Any]:
    converted = _PARTS.chat_message(dict(message))
    if "weight" in message:
        converted["weight"] = message["weight"]
    return converted


def import_lines(
    records: Sequence[Mapping[str, Any]],
    *,
    dataset: str,
    source: Path,
    sha256: str,
    model: str | None,
) -> list[str]:
    """One spool line per example of a file, in file order."""
    return example_lines(
        records,
        dataset=dataset,
        trace_id=file_trace_id(sha256),
        scope=IMPORT_SCOPE,
        model=model,
        attributes=[
            {SOURCE: str(source), SOURCE_SHA256: sha256, SOURCE_LINE: index + 1}
            for index in range(len(records))
        ],
    )


def example_lines(
    records: Sequence[Mapping[str, Any]],
    *,
    dataset: str,
    trace_id: int,
    scope: str,
    model: str | None,
    attributes: Sequence[Mapping[str, Any]] | None = None,
    finish_reasons: Sequence[str | None] | None = None,
) -> list[str]:
    """One spool line per OpenAI-format example (its last message the target), as a call of
    ``dataset`` made by ``scope``, with ``attributes`` of its own; their start times, a
    millisecond apart and ending now, keep the records' order. ``finish_reasons``: how each
    answer ended (OpenAI's words; default ``stop``): one cut off at ``length`` is stored, as a
    captured one is, but is not a training example."""
    now = time.time_ns()
    lines = []
    for index, record in enumerate(records):
        messages = record["messages"]
        *history, target = messages
        reason = (finish_reasons[index] if finish_reasons is not None else None) or "stop"
        output = _PARTS.chat_output(dict(target), reason)
        if "weight" in target:
            output["weight"] = target["weight"]
        start = now - (len(records) - index) * 1_000_000
        record_ = CallRecord(
            trace_id=trace_id,
            span_id=index + 1,
            start_ns=start,
            end_ns=start,
            dataset=dataset,
            operation=sc.OPERATION_CHAT,
            request_model=model,
            finish_reasons=[reason],
            request_options=(
                {"parallel_tool_calls": record["parallel_tool_calls"]}
                if "parallel_tool_calls" in record
                else None
            ),
            input_messages=[_message(m) for m in history],
            output_messages=[output],
            tool_definitions=tool_definitions(record["tools"]) if record.get("tools") else None,
            scope_name=scope,
            attributes=attributes[index] if attributes is not None else {},
        )
        lines.append(encode_row(record_))
    return lines
