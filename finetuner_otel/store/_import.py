"""Examples from an OpenAI chat fine-tuning file, as calls of a named dataset.

Each example becomes the same kind of row a captured call does: it is mapped to the GenAI
semantic-convention content by the instrumentation's own mapping and written by the exporter's
own ``span_to_line``, so an imported example exports exactly as a captured one would.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from .. import _semconv as sc
from .._json import dumps
from ..instrumentation._content import input_message, output_message, tool_definitions
from ._rows import span_to_line

IMPORT_SCOPE = "finetuner_otel.import"
SOURCE = "finetuner.import.source"
SOURCE_SHA256 = "finetuner.import.sha256"
SOURCE_LINE = "finetuner.import.line"


def file_trace_id(sha256: str) -> int:
    """Every example of one file shares a trace id taken from the file's hash."""
    return int(sha256[:32], 16) or 1


def _message(message: Mapping[str, Any]) -> dict[str, Any]:
    converted = input_message(dict(message))
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
) -> list[str]:
    """One spool line per OpenAI-format example (its last message the target), as a call of
    ``dataset`` made by ``scope``, with ``attributes`` of its own; their start times, a
    millisecond apart and ending now, keep the records' order."""
    now = time.time_ns()
    lines = []
    for index, record in enumerate(records):
        messages = record["messages"]
        *history, target = messages
        output = output_message(dict(target), "stop")
        if "weight" in target:
            output["weight"] = target["weight"]
        span_attributes: dict[str, Any] = {
            sc.OPERATION_NAME: sc.OPERATION_CHAT,
            sc.DATASET: dataset,
            sc.INPUT_MESSAGES: dumps([_message(m) for m in history]),
            sc.OUTPUT_MESSAGES: dumps([output]),
            sc.RESPONSE_FINISH_REASONS: ("stop",),
            **(attributes[index] if attributes is not None else {}),
        }
        if model is not None:
            span_attributes[sc.REQUEST_MODEL] = model
        if record.get("tools"):
            span_attributes[sc.TOOL_DEFINITIONS] = dumps(tool_definitions(record["tools"]))
        if "parallel_tool_calls" in record:
            span_attributes[sc.REQUEST_OPTIONS] = dumps(
                {"parallel_tool_calls": record["parallel_tool_calls"]}
            )
        start = now - (len(records) - index) * 1_000_000
        span = ReadableSpan(
            name=f"{scope} {dataset}",
            context=SpanContext(
                trace_id, index + 1, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED)
            ),
            attributes=span_attributes,
            kind=SpanKind.INTERNAL,
            instrumentation_scope=InstrumentationScope(scope),
            status=Status(StatusCode.OK),
            start_time=start,
            end_time=start,
        )
        lines.append(span_to_line(span))
    return lines
