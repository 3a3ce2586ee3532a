"""What every framework's test does: the same call bare and captured, then the rows checked.

``capture_and_compare`` runs a framework call twice against the local server with the same
scripted replies: first with the SDK bare (the control), then with ``finetuner_otel.instrument``
into a fresh store inside ``with finetuner_otel.dataset("x")``. The framework's results, and the
requests it sent, must be the same both times (ids and clocks aside: the server numbers each
answer anew). ``assert_examples`` then checks one trainable row per model call in dataset ``x``
and the exported JSONL line of each: the messages the framework sent plus the answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic_core

import finetuner_otel
from finetuner_otel.testing import OpenAIServer, RecordedRequest, Reply, ToolCall

from ..conftest import rows

DATASET = "x"

# The server's and the frameworks' generated ids, and uuids: different on every run.
_VOLATILE_ID = re.compile(
    r"\b(?:chatcmpl|resp|msg|fc|rs|req|call|run|lc_run-|toolu|ws)[-_][0-9A-Za-z-]{6,}"
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)
# Clocks and durations.
_TIME_KEYS = frozenset(
    {"created", "created_at", "completed_at", "timestamp", "date", "_response_ms", "response_ms"}
)


def plain(value: Any) -> Any:
    """A result as JSON values (pydantic models, dataclasses, datetimes), ids and clocks out."""
    return _scrub(pydantic_core.to_jsonable_python(value, fallback=repr))


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "<t>" if k in _TIME_KEYS else _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, str):
        return _VOLATILE_ID.sub("<id>", value)
    return value


@dataclass
class Stats:
    """Totals over the captured runs of a session (what the runner reports)."""

    calls: int = 0
    rows: int = 0
    trainable: int = 0
    duplicates: int = 0

    def add(self, calls: int, stored: list[dict[str, Any]]) -> None:
        self.calls += calls
        self.rows += len(stored)
        self.trainable += sum(1 for r in stored if r["trainable"])
        self.duplicates += max(0, len(stored) - calls)

    def __str__(self) -> str:
        return (
            f"{self.calls} model calls, {self.rows} rows, {self.trainable} trainable, "
            f"{self.duplicates} duplicates"
        )


STATS = Stats()


@dataclass
class Captured:
    """The captured run: the framework's result, what it sent, and what the store holds."""

    result: Any
    requests: list[RecordedRequest]
    rows: list[dict[str, Any]]
    lines: list[dict[str, Any]]


def capture_and_compare(
    server: OpenAIServer,
    db: Path,
    call: Callable[[], Any],
    replies: Sequence[Reply] = (),
    view: Callable[[Any], Any] = plain,
    settle: Callable[[int], None] = lambda calls: None,
) -> Captured:
    """``call()`` bare, then captured into ``db``; the two results (through ``view``) and the
    two runs' requests must be equal. ``settle(calls)`` waits after each run for what the
    framework reports in the background (litellm's callbacks end their spans on a thread)."""
    server.enqueue(*replies)
    bare = view(call())
    bare_requests = list(server.requests)
    settle(len(bare_requests))
    handle = finetuner_otel.instrument(db)
    try:
        server.enqueue(*replies)
        with finetuner_otel.dataset(DATASET):
            result = call()
        sent = server.requests[len(bare_requests) :]
        settle(len(sent))
        stored = _rows(handle)
        STATS.add(len(sent), stored)
        lines = _exported(handle, db.parent / "x.jsonl") if stored else []
    finally:
        handle.shutdown()
    assert view(result) == bare, "the framework's result changed when instrumented"
    assert [plain(r.json) for r in sent] == [plain(r.json) for r in bare_requests], (
        "the framework sent other requests when instrumented"
    )
    return Captured(result, sent, stored, lines)


def _rows(handle: finetuner_otel.Instrumentation) -> list[dict[str, Any]]:
    """The stored calls; none where nothing reached the store (it is made on the first)."""
    try:
        return rows(handle)
    except finetuner_otel.StoreError:
        return []


def _exported(handle: finetuner_otel.Instrumentation, path: Path) -> list[dict[str, Any]]:
    store = handle.open_store()
    if DATASET not in {s.name for s in store.list_datasets()}:
        return []
    store.get_dataset(DATASET).to_jsonl(path)
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_examples(captured: Captured, answers: Sequence[dict[str, Any]]) -> None:
    """One row per model call, each in dataset x, trainable, exported as sent plus answered."""
    stored = captured.rows
    assert len(captured.requests) == len(answers), "model calls made"
    assert len(stored) == len(captured.requests), (
        f"{len(captured.requests)} model calls stored as {len(stored)} rows: "
        f"{[(r['response_id'], r['status'], r['untrainable_reason']) for r in stored]}"
    )
    untrainable = [(r["status"], r["untrainable_reason"]) for r in stored if not r["trainable"]]
    assert not untrainable, f"complete answers stored untrainable: {untrainable}"
    assert len({r["response_id"] for r in stored}) == len(stored), "a call stored twice"
    assert [r["dataset"] for r in stored] == [DATASET] * len(stored)
    expected = [example(r.json, a) for r, a in zip(captured.requests, answers, strict=True)]
    assert len(captured.lines) == len(expected), "exported lines"
    for got, want in zip(captured.lines, expected, strict=True):
        assert got == want, f"exported:\n{json.dumps(got)}\nexpected:\n{json.dumps(want)}"


def example(request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """The fine-tuning line a request and its answer make (chat completions or Responses)."""
    if "messages" in request:
        messages = [_as_stored(m) for m in request["messages"]]
        tools = request.get("tools")
    else:
        messages = responses_messages(request)
        tools = [
            {"type": "function", "function": {k: v for k, v in t.items() if k != "type"}}
            for t in request.get("tools") or []
        ]
    line: dict[str, Any] = {"messages": [*messages, answer]}
    if tools:
        line["tools"] = tools
    return line


def _as_stored(message: dict[str, Any]) -> dict[str, Any]:
    """A sent chat message as the store keeps it: a null field (an assistant's "content": null
    beside its tool calls) is left out, and so is a tool message's "name" (instructor sends
    one; the API's tool message has none, and a fine-tuning line has no use for it)."""
    dropped = {"name"} if message.get("role") == "tool" else set()
    return {k: v for k, v in message.items() if v is not None and k not in dropped}


def responses_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    """A Responses request's instructions and input items as chat messages."""
    out: list[dict[str, Any]] = []
    if request.get("instructions"):
        out.append({"role": "system", "content": request["instructions"]})
    items = request["input"]
    if isinstance(items, str):
        return [*out, {"role": "user", "content": items}]
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            content = item["content"]
            if isinstance(content, list):
                content = "".join(part["text"] for part in content)
            out.append({"role": item["role"], "content": content})
        elif kind == "function_call":
            call = {"name": item["name"], "arguments": item["arguments"]}
            out.append(tool_answer(ToolCall(call["name"], call["arguments"], item["call_id"])))
        elif kind == "function_call_output":
            out.append({"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]})
    return out


def text_answer(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def tool_answer(*calls: ToolCall) -> dict[str, Any]:
    return {
        "role": "assistant",
        "tool_calls": [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            }
            for c in calls
        ],
    }


def framework_spans(spans: Sequence[Any]) -> list[Any]:
    """The app's spans that are not ours: what the framework's own tracing made."""
    return [s for s in spans if not s.instrumentation_scope.name.startswith("finetuner_otel")]
