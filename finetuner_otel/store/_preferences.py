"""Checks of preference (DPO) fine-tuning data, by the rules of the providers that take it.

The format is OpenAI's, which Together and Fireworks take too::

    {"input": {"messages": [...], "tools": [...], "parallel_tool_calls": true},
     "preferred_output": [{"role": "assistant", "content": "..."}],
     "non_preferred_output": [{"role": "assistant", "content": "..."}]}

The rules, and whose they are:

- every provider: ``input.messages`` a non-empty list of messages with known roles, ending in
  a user (or tool) message, not an assistant one (the outputs answer it); each output a list of
  exactly one assistant message (Together: "both outputs must contain exactly one message from
  the assistant role") with text content; the two outputs not the same.
- OpenAI: "DPO is currently only supported for text inputs and outputs": no image, audio or
  file parts in the input, and no tool calls in an output (``tool_call_output``: a pair whose
  answer was a tool call cannot be trained on; record a text answer for it instead).
- Fireworks: input messages have the roles system, user or assistant and string content, and
  a dataset has at least 3 examples.

``validate_preference_records(records, provider=...)`` applies every provider's rules (None)
or one provider's (openai, together, fireworks). Codes: ``data_type``, ``missing_input``,
``message_missing_key``, ``unrecognized_role``, ``missing_content``, ``non_text_input``,
``input_ends_with_assistant``, ``invalid_output``, ``tool_call_output``, ``identical_outputs``,
``example_unrecognized_key``, ``too_few_examples``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .._errors import ConfigurationError
from ._validate import Distribution, Problem, Stats, ValidationReport, read_jsonl, validate_records

PROVIDERS = ("openai", "together", "fireworks")
_KEYS = frozenset({"input", "preferred_output", "non_preferred_output"})
_OUTPUTS = ("preferred_output", "non_preferred_output")
_INPUT_KEYS = frozenset({"messages", "tools", "parallel_tool_calls"})
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_FIREWORKS_ROLES = frozenset({"system", "user", "assistant"})
_FIREWORKS_MINIMUM = 3


def is_preference_record(record: Any) -> bool:
    """Whether a record is in the preference (DPO) format rather than the chat one."""
    return isinstance(record, Mapping) and ("input" in record or "preferred_output" in record)


class _Checks:
    def __init__(self, providers: Sequence[str]) -> None:
        self.providers = providers
        self.errors: Counter[str] = Counter()
        self.problems: list[Problem] = []

    def error(self, position: int, ident: str | None, code: str, detail: str) -> None:
        self.errors[code] += 1
        self.problems.append(Problem(position, code, detail, "error", ident))

    def record(self, position: int, ident: str | None, record: Any) -> int | None:
        """Check one record; the number of its input messages when it has them."""
        if not isinstance(record, Mapping):
            self.error(position, ident, "data_type", "the example is not a JSON object")
            return None
        unknown = sorted(set(record) - _KEYS)
        if unknown:
            self.error(
                position,
                ident,
                "example_unrecognized_key",
                f"unknown keys {unknown}; a preference example holds input, preferred_output "
                f"and non_preferred_output",
            )
        messages = self._input(position, ident, record.get("input"))
        outputs = [self._output(position, ident, record, key) for key in _OUTPUTS]
        if all(o is not None for o in outputs) and outputs[0] == outputs[1]:
            self.error(
                position,
                ident,
                "identical_outputs",
                "preferred_output and non_preferred_output are the same: nothing to learn",
            )
        return len(messages) if messages is not None else None

    def _input(self, position: int, ident: str | None, value: Any) -> list[Any] | None:
        messages = value.get("messages") if isinstance(value, Mapping) else None
        if not isinstance(messages, list) or not messages:
            self.error(
                position,
                ident,
                "missing_input",
                'no non-empty input.messages list; an example is {"input": {"messages": [...]}, '
                '"preferred_output": [...], "non_preferred_output": [...]}',
            )
            return None
        unknown = sorted(set(value) - _INPUT_KEYS)
        if unknown:
            self.error(position, ident, "example_unrecognized_key", f"unknown input keys {unknown}")
        for index, message in enumerate(messages, 1):
            self._message(position, ident, index, message)
        last = messages[-1]
        if isinstance(last, Mapping) and last.get("role") == "assistant":
            self.error(
                position,
                ident,
                "input_ends_with_assistant",
                "input.messages ends with an assistant message; the outputs are the answer to "
                "the last user message, so leave that answer out of the input",
            )
        return messages

    def _message(self, position: int, ident: str | None, index: int, message: Any) -> None:
        where = f"input message {index}"
        if not isinstance(message, Mapping) or "role" not in message:
            self.error(position, ident, "message_missing_key", f"{where} has no role")
            return
        role = message.get("role")
        fireworks = "fireworks" in self.providers
        if role not in _ROLES or (fireworks and role not in _FIREWORKS_ROLES):
            allowed = _FIREWORKS_ROLES if fireworks else _ROLES
            self.error(
                position,
                ident,
                "unrecognized_role",
                f"{where} has role {role!r}; preference inputs take {', '.join(sorted(allowed))}"
                + (" (Fireworks)" if fireworks else ""),
            )
        content = message.get("content")
        if isinstance(content, list):
            kinds = {p.get("type") for p in content if isinstance(p, Mapping)}
            if "openai" in self.providers and kinds - {"text"}:
                self.error(
                    position,
                    ident,
                    "non_text_input",
                    f"{where} has {', '.join(sorted(str(k) for k in kinds - {'text'}))} parts; "
                    f"OpenAI's DPO takes text inputs only",
                )
            elif fireworks:
                self.error(
                    position,
                    ident,
                    "non_text_input",
                    f"{where} has a list of parts; Fireworks takes string content",
                )
        elif content is None and not message.get("tool_calls"):
            self.error(position, ident, "missing_content", f"{where} has no content")

    def _output(self, position: int, ident: str | None, record: Mapping[str, Any], key: str) -> Any:
        value = record.get(key)
        if (
            not isinstance(value, list)
            or len(value) != 1
            or not isinstance(value[0], Mapping)
            or value[0].get("role") != "assistant"
        ):
            self.error(
                position,
                ident,
                "invalid_output",
                f'{key} must be a list of exactly one assistant message, e.g. [{{"role": '
                f'"assistant", "content": "..."}}]',
            )
            return None
        message = value[0]
        if message.get("tool_calls"):
            self.error(
                position,
                ident,
                "tool_call_output",
                f"{key} is a tool call; OpenAI's, Together's and Fireworks' DPO train on text "
                f"answers: record a text answer for this pair (store.prefer(call_id, preferred, "
                f"non_preferred='...')) or leave the pair out",
            )
            return None
        content = message.get("content")
        text = content if isinstance(content, str) else None
        if isinstance(content, list):
            parts = [p.get("text") for p in content if isinstance(p, Mapping)]
            text = "".join(p for p in parts if isinstance(p, str)) or None
        if not text:
            self.error(position, ident, "missing_content", f"{key} has no text content")
            return None
        return text


def validate_preference_records(
    records: Iterable[Any],
    *,
    provider: str | None = None,
    ids: Sequence[str | None] | None = None,
) -> ValidationReport:
    """Check preference (DPO) examples by the rules of ``provider`` (openai, together or
    fireworks; None: all of them). See the module's docstring for the rules."""
    if provider is not None and provider not in PROVIDERS:
        raise ConfigurationError(
            f"provider is one of {', '.join(PROVIDERS)} (or None for all), got {provider!r}"
        )
    checks = _Checks([provider] if provider else list(PROVIDERS))
    sizes: list[int] = []
    count = 0
    for count, record in enumerate(records, 1):
        size = checks.record(count, ids[count - 1] if ids is not None else None, record)
        if size is not None:
            sizes.append(size)
    if "fireworks" in checks.providers and 0 < count < _FIREWORKS_MINIMUM:
        checks.error(
            count,
            None,
            "too_few_examples",
            f"{count} example(s); Fireworks' DPO needs at least {_FIREWORKS_MINIMUM}",
        )
    stats = Stats(examples=count, messages=Distribution.of(sizes))
    return ValidationReport(count, checks.errors, Counter(), checks.problems, stats)


def validate_jsonl(
    path: str | os.PathLike[str],
    *,
    model: str | None = None,
    encoding: Any = None,
    context: int | None = None,
    epochs: int | None = None,
    provider: str | None = None,
) -> ValidationReport:
    """Check a fine-tuning JSONL file as the providers do before training on it: a chat file
    (``{"messages": [...]}``) as OpenAI does, with token counts (``model``, ``encoding``,
    ``context``, ``epochs``); a preference (DPO) file (``{"input": ..., "preferred_output": ...,
    "non_preferred_output": ...}``, told by its first line) by the rules of ``provider``
    (openai, together, fireworks; None: all)."""
    records = read_jsonl(path)
    if records and is_preference_record(records[0]):
        return validate_preference_records(records, provider=provider)
    return validate_records(records, model=model, encoding=encoding, context=context, epochs=epochs)
