"""Checks of chat fine-tuning data, as OpenAI publishes them, and token statistics.

The checks follow OpenAI's "Data preparation and analysis for chat model fine-tuning"
(``data_type``, ``missing_messages_list``, ``message_missing_key``, ``message_unrecognized_key``,
``unrecognized_role``, ``missing_content``, ``example_missing_assistant_message``; warnings for
examples without a system or a user message), counted the same way: once per offending message
for the message checks, once per example for the others. They are extended for what the chat
format has gained since: ``tool`` messages and assistant ``tool_calls``, a ``tools`` list,
``weight``, content given as a list of parts, and examples longer than the model's training
context. Token counts use ``tiktoken`` with the model's own encoding.
"""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import ConfigurationError
from .._json import dumps

# OpenAI's checks, in the order its notebook reports them, then ours.
ERROR_CODES = (
    "data_type",
    "missing_messages_list",
    "message_missing_key",
    "message_unrecognized_key",
    "unrecognized_role",
    "missing_content",
    "example_missing_assistant_message",
    "example_unrecognized_key",
    "invalid_weight",
    "invalid_tool_call",
    "unknown_tool_call_id",
    "invalid_tools",
    "over_context",
)
WARNING_CODES = ("missing_system_message", "missing_user_message")

_MESSAGE_KEYS = frozenset(
    {"role", "content", "name", "function_call", "weight", "tool_calls", "tool_call_id", "refusal"}
)
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_EXAMPLE_KEYS = frozenset({"messages", "tools", "parallel_tool_calls", "functions"})
_PART_TYPES = frozenset({"text", "image_url", "input_audio", "file"})

# Training-example context of OpenAI's fine-tunable models (longest prefix wins).
TRAINING_CONTEXT: dict[str, int] = {
    "gpt-3.5-turbo": 16_385,
    "gpt-4o-mini": 65_536,
    "gpt-4o": 65_536,
    "gpt-4.1-nano": 65_536,
    "gpt-4.1-mini": 65_536,
    "gpt-4.1": 65_536,
}

# OpenAI's default number of epochs: 3, unless that gives fewer than 100 or more than 25,000
# example passes (the notebook's TARGET_EPOCHS, MIN/MAX_TARGET_EXAMPLES, MIN/MAX_DEFAULT_EPOCHS).
_TARGET_EPOCHS, _MIN_PASSES, _MAX_PASSES, _MIN_EPOCHS, _MAX_EPOCHS = 3, 100, 25_000, 1, 25


@dataclass(frozen=True)
class Problem:
    """One finding: ``example`` is the 1-based position (the line, for a file)."""

    example: int
    code: str
    detail: str
    severity: str = "error"
    example_id: str | None = None

    def __str__(self) -> str:
        where = f"example {self.example}" + (f" ({self.example_id})" if self.example_id else "")
        return f"{where}: {self.severity} {self.code}: {self.detail}"


@dataclass(frozen=True)
class Distribution:
    """min, max, mean, median and the 5th/95th percentiles of a list of counts."""

    min: int
    max: int
    mean: float
    median: float
    p5: float
    p95: float

    @classmethod
    def of(cls, values: Sequence[int]) -> Distribution | None:
        if not values:
            return None
        ordered = sorted(values)

        def quantile(q: float) -> float:
            position = q * (len(ordered) - 1)
            low = int(position)
            high = min(low + 1, len(ordered) - 1)
            return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

        return cls(
            min=ordered[0],
            max=ordered[-1],
            mean=statistics.fmean(ordered),
            median=statistics.median(ordered),
            p5=quantile(0.05),
            p95=quantile(0.95),
        )

    def __str__(self) -> str:
        return (
            f"min {self.min}, max {self.max}, mean {self.mean:.1f}, median {self.median:g}, "
            f"p5 {self.p5:g}, p95 {self.p95:g}"
        )


@dataclass(frozen=True)
class Stats:
    """Counts and token distribution of a set of examples, and the training-token estimate."""

    examples: int
    messages: Distribution | None
    encoding: str | None = None
    tokens: Distribution | None = None
    assistant_tokens: Distribution | None = None
    context: int | None = None
    over_context: int = 0
    epochs: int | None = None
    billed_tokens_per_epoch: int | None = None
    token_note: str | None = None

    @property
    def training_tokens(self) -> int | None:
        """Tokens billed for training: per-epoch tokens (each example capped at the context)
        times the epochs."""
        if self.billed_tokens_per_epoch is None or self.epochs is None:
            return None
        return self.billed_tokens_per_epoch * self.epochs

    def summary(self) -> str:
        lines = [f"{self.examples} examples"]
        if self.messages:
            lines.append(f"messages per example: {self.messages}")
        if self.tokens and self.assistant_tokens:
            lines.append(f"tokens per example ({self.encoding}): {self.tokens}")
            lines.append(f"assistant tokens per example: {self.assistant_tokens}")
            if self.context:
                lines.append(
                    f"{self.over_context} examples over the {self.context:,}-token training context"
                )
            lines.append(
                f"~{self.training_tokens:,} training tokens: {self.billed_tokens_per_epoch:,} "
                f"per epoch x {self.epochs} epochs"
            )
        elif self.token_note:
            lines.append(f"token counts unavailable: {self.token_note}")
        return "\n".join(lines)


@dataclass(frozen=True)
class ValidationReport:
    """What ``validate()`` found: counts per check, every problem, and the ``stats``."""

    examples: int
    errors: Counter[str]
    warnings: Counter[str]
    problems: list[Problem] = field(repr=False)
    stats: Stats = field(repr=False)

    @property
    def ok(self) -> bool:
        """True when no example has an error (warnings allowed)."""
        return not self.errors

    def __bool__(self) -> bool:
        return self.ok

    def summary(self, limit: int = 10) -> str:
        """A readable report: the verdict, counts per check, the first problems, the stats."""
        verdict = "no errors found" if self.ok else "found errors"
        lines = [f"{self.examples} examples: {verdict}"]
        lines += [f"  error {code}: {n}" for code, n in _ordered(self.errors, ERROR_CODES)]
        lines += [f"  warning {code}: {n}" for code, n in _ordered(self.warnings, WARNING_CODES)]
        shown = [p for p in self.problems if p.severity == "error"][:limit]
        if shown:
            lines.append("first problems:")
            lines += [f"  {p}" for p in shown]
        lines.append(self.stats.summary())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _ordered(counts: Counter[str], order: Sequence[str]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99)


# --- tokens -----------------------------------------------------------------------------------


def resolve_encoding(model: str | None, encoding: Any) -> tuple[Any, str | None]:
    """The tiktoken encoding to count with, or (None, why not).

    ``encoding`` may be a ``tiktoken.Encoding``, an encoding name, or None for the model's own
    (a fine-tuned ``ft:base:...`` model counts with its base model's).
    """
    if encoding is not None and not isinstance(encoding, str):
        if not callable(getattr(encoding, "encode", None)):
            raise ConfigurationError(
                f"encoding must be a tiktoken.Encoding or an encoding name, got {encoding!r}"
            )
        return encoding, None
    try:
        import tiktoken
    except ImportError:
        return None, "tiktoken is not installed (pip install 'finetuner-otel[tokens]')"
    try:
        if isinstance(encoding, str):
            return tiktoken.get_encoding(encoding), None
        if model is None:
            return None, "no model given to choose the encoding (pass model= or encoding=)"
        base = model.split(":")[1] if model.startswith("ft:") else model
        try:
            return tiktoken.encoding_for_model(base), None
        except KeyError:
            return None, (
                f"tiktoken does not know the encoding of {base!r}; pass encoding= "
                f"(e.g. 'o200k_base')"
            )
    except ValueError as exc:  # an unknown encoding name
        raise ConfigurationError(str(exc)) from exc
    except Exception as exc:  # tiktoken downloads encodings on first use
        detail = str(exc).splitlines()[0] if str(exc) else ""
        detail = detail if len(detail) <= 80 else detail[:77] + "..."
        return None, (
            f"tiktoken could not load the encoding ({type(exc).__name__}: {detail}); it "
            f"downloads each encoding once: run once with network access, or set "
            f"TIKTOKEN_CACHE_DIR to a folder that holds it"
        )


def training_context(model: str | None) -> int | None:
    if model is None:
        return None
    base = model.split(":")[1] if model.startswith("ft:") else model
    matches = [prefix for prefix in TRAINING_CONTEXT if base.startswith(prefix)]
    return TRAINING_CONTEXT[max(matches, key=len)] if matches else None


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # content parts: the text ones count as text
        texts = [p.get("text") for p in value if isinstance(p, Mapping)]
        if all(isinstance(t, str) for t in texts) and len(texts) == len(value):
            return "".join(texts)  # type: ignore[arg-type]
    return dumps(value)


def count_tokens(encoding: Any, messages: Sequence[Any], tools: Any = None) -> tuple[int, int]:
    """(tokens of the whole example, tokens of its assistant messages), counted as OpenAI's
    notebook does: 3 per message, 1 more for a name, 3 to prime the reply; tool calls and a
    ``tools`` list count as their JSON text. An estimate, as the notebook says."""
    total = 3
    assistant = 0
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        total += 3
        for key, value in message.items():
            if key == "weight" or value is None:
                continue
            n = len(encoding.encode(_text_of(value), disallowed_special=()))
            total += n + (1 if key == "name" else 0)
            if message.get("role") == "assistant" and key in ("content", "tool_calls"):
                assistant += n
    if tools:
        total += len(encoding.encode(dumps(tools), disallowed_special=()))
    return total, assistant


def default_epochs(examples: int) -> int:
    """The number of epochs OpenAI picks for a training file of ``examples`` examples."""
    if examples <= 0:
        return _TARGET_EPOCHS
    if examples * _TARGET_EPOCHS < _MIN_PASSES:
        return min(_MAX_EPOCHS, _MIN_PASSES // examples)
    if examples * _TARGET_EPOCHS > _MAX_PASSES:
        return max(_MIN_EPOCHS, _MAX_PASSES // examples)
    return _TARGET_EPOCHS


# --- checks -----------------------------------------------------------------------------------


class _Checker:
    def __init__(self) -> None:
        self.errors: Counter[str] = Counter()
        self.warnings: Counter[str] = Counter()
        self.problems: list[Problem] = []

    def error(self, position: int, ident: str | None, code: str, detail: str) -> None:
        self.errors[code] += 1
        self.problems.append(Problem(position, code, detail, "error", ident))

    def warn(self, position: int, ident: str | None, code: str, detail: str) -> None:
        self.warnings[code] += 1
        self.problems.append(Problem(position, code, detail, "warning", ident))

    def example(self, position: int, ident: str | None, record: Any) -> list[Any] | None:
        """Check one record; its messages when they are a list of messages worth counting."""
        if not isinstance(record, Mapping):
            self.error(position, ident, "data_type", "the example is not a JSON object")
            return None
        messages = record.get("messages")
        if not messages or not isinstance(messages, list):
            self.error(
                position,
                ident,
                "missing_messages_list",
                "no non-empty 'messages' list; an example is {\"messages\": [...]}",
            )
            return None
        unknown = sorted(set(record) - _EXAMPLE_KEYS)
        if unknown:
            self.error(
                position,
                ident,
                "example_unrecognized_key",
                f"unknown keys {unknown}; an example holds 'messages' and optionally 'tools'",
            )
        if "tools" in record:
            self._tools(position, ident, record["tools"])
        called: set[str] = set()
        for index, message in enumerate(messages, 1):
            self._message(position, ident, index, message, called)
        roles = [m.get("role") for m in messages if isinstance(m, Mapping)]
        if "assistant" not in roles:
            self.error(
                position,
                ident,
                "example_missing_assistant_message",
                "no assistant message: an example needs at least one to train on",
            )
        if "system" not in roles and "developer" not in roles:
            self.warn(position, ident, "missing_system_message", "no system message")
        if "user" not in roles:
            self.warn(position, ident, "missing_user_message", "no user message")
        return messages

    def _message(
        self, position: int, ident: str | None, index: int, message: Any, called: set[str]
    ) -> None:
        where = f"message {index}"
        if not isinstance(message, Mapping):
            self.error(position, ident, "message_missing_key", f"{where} is not a JSON object")
            return
        role = message.get("role")
        # An assistant message that only calls tools may leave content out.
        calls_only = role == "assistant" and bool(message.get("tool_calls"))
        if ("role" not in message or "content" not in message) and not calls_only:
            missing = [k for k in ("role", "content") if k not in message]
            self.error(position, ident, "message_missing_key", f"{where} has no {missing}")
        unknown = sorted(set(message) - _MESSAGE_KEYS)
        if unknown:
            self.error(
                position,
                ident,
                "message_unrecognized_key",
                f"{where} has unknown keys {unknown}; a message holds role, content, name, "
                f"tool_calls, tool_call_id, weight",
            )
        if role not in _ROLES:
            self.error(
                position,
                ident,
                "unrecognized_role",
                f"{where} has role {role!r}; use system, user, assistant or tool",
            )
        content = message.get("content")
        has_call = bool(message.get("tool_calls") or message.get("function_call"))
        if not _valid_content(content, allow_empty=has_call and role == "assistant"):
            self.error(
                position,
                ident,
                "missing_content",
                f"{where} has no content: give a non-empty string (or a list of content parts)",
            )
        if "weight" in message:
            weight = message["weight"]
            if role != "assistant" or isinstance(weight, bool) or weight not in (0, 1):
                self.error(
                    position,
                    ident,
                    "invalid_weight",
                    f"{where}: weight is 0 or 1, on assistant messages only (got {weight!r} on "
                    f"{role!r})",
                )
        if "tool_calls" in message:
            calls = message["tool_calls"]
            if (
                role != "assistant"
                or not isinstance(calls, list)
                or not all(_valid_tool_call(c) for c in calls)
            ):
                self.error(
                    position,
                    ident,
                    "invalid_tool_call",
                    f"{where}: tool_calls is a list of {{'id', 'type': 'function', 'function': "
                    f"{{'name', 'arguments': '<JSON text>'}}}} on an assistant message",
                )
            else:
                called.update(c["id"] for c in calls)
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in called:
                self.error(
                    position,
                    ident,
                    "unknown_tool_call_id",
                    f"{where}: a tool message answers an earlier assistant tool call; its "
                    f"tool_call_id {call_id!r} matches none",
                )

    def _tools(self, position: int, ident: str | None, tools: Any) -> None:
        if not isinstance(tools, list) or not all(_valid_tool(t) for t in tools):
            self.error(
                position,
                ident,
                "invalid_tools",
                "tools is a list of {'type': 'function', 'function': {'name': ..., "
                "'parameters': {...}}}",
            )


def _valid_content(content: Any, *, allow_empty: bool) -> bool:
    if content is None or content == "" or content == []:
        return allow_empty
    if isinstance(content, str):
        return True
    return isinstance(content, list) and all(
        isinstance(p, Mapping) and p.get("type") in _PART_TYPES for p in content
    )


def _valid_tool_call(call: Any) -> bool:
    if not isinstance(call, Mapping) or not isinstance(call.get("id"), str):
        return False
    if call.get("type") == "custom":
        return isinstance(call.get("custom"), Mapping)
    function = call.get("function")
    return (
        call.get("type") == "function"
        and isinstance(function, Mapping)
        and isinstance(function.get("name"), str)
        and isinstance(function.get("arguments"), str)
    )


def _valid_tool(tool: Any) -> bool:
    if not isinstance(tool, Mapping):
        return False
    kind = tool.get("type")
    body = tool.get(kind) if isinstance(kind, str) else None
    return isinstance(body, Mapping) and isinstance(body.get("name"), str)


def validate_records(
    records: Iterable[Any],
    *,
    model: str | None = None,
    encoding: Any = None,
    context: int | None = None,
    epochs: int | None = None,
    ids: Sequence[str | None] | None = None,
) -> ValidationReport:
    """Check chat fine-tuning examples (already parsed) and count their tokens.

    ``model`` picks the encoding and the training context (``context`` overrides it);
    ``epochs`` the epochs of the training-token estimate (default: OpenAI's choice).
    """
    if epochs is not None and (
        isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1
    ):
        raise ConfigurationError(f"epochs must be a whole number >= 1, got {epochs!r}")
    checker = _Checker()
    tokenizer, note = resolve_encoding(model, encoding)
    limit = context if context is not None else training_context(model)
    n_messages: list[int] = []
    totals: list[int] = []
    assistant: list[int] = []
    over = 0
    count = 0
    for count, record in enumerate(records, 1):
        ident = ids[count - 1] if ids is not None else None
        messages = checker.example(count, ident, record)
        if messages is None:
            continue
        n_messages.append(len(messages))
        if tokenizer is None:
            continue
        total, answer = count_tokens(tokenizer, messages, record.get("tools"))
        totals.append(total)
        assistant.append(answer)
        if limit is not None and total > limit:
            over += 1
            checker.error(
                count,
                ident,
                "over_context",
                f"{total:,} tokens, over the {limit:,}-token training context of {model}: "
                f"shorten it or leave it out",
            )
    chosen_epochs = epochs if epochs is not None else default_epochs(count)
    stats = Stats(
        examples=count,
        messages=Distribution.of(n_messages),
        encoding=getattr(tokenizer, "name", None),
        tokens=Distribution.of(totals),
        assistant_tokens=Distribution.of(assistant),
        context=limit,
        over_context=over,
        epochs=chosen_epochs if tokenizer is not None else None,
        billed_tokens_per_epoch=(
            sum(min(t, limit) if limit else t for t in totals) if tokenizer is not None else None
        ),
        token_note=note,
    )
    return ValidationReport(count, checker.errors, checker.warnings, checker.problems, stats)


def read_jsonl(path: str | os.PathLike[str]) -> list[Any]:
    """The records of a JSONL file; a line that is not JSON is reported with its number."""
    source = Path(path)
    if not source.is_file():
        raise ConfigurationError(f"{source} is not a file; give the path of a .jsonl file")
    records: list[Any] = []
    with source.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                raise ConfigurationError(
                    f"{source}, line {number}: empty line; a JSONL file has one JSON example on "
                    f"every line"
                )
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ConfigurationError(
                    f"{source}, line {number}: not JSON ({exc.msg} at column {exc.colno})"
                ) from None
    return records


def validate_jsonl(
    path: str | os.PathLike[str],
    *,
    model: str | None = None,
    encoding: Any = None,
    context: int | None = None,
    epochs: int | None = None,
) -> ValidationReport:
    """Check a chat fine-tuning JSONL file as OpenAI does before training on it."""
    return validate_records(
        read_jsonl(path), model=model, encoding=encoding, context=context, epochs=epochs
    )
