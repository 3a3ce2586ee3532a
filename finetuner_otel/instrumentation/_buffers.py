"""Accumulates streamed chat-completion chunks into the same attributes a whole response gives."""

from __future__ import annotations

from typing import Any

from .. import _semconv as sc
from ._content import (
    encode_messages,
    field,
    getter,
    given,
    semconv_finish_reason,
    usage_attributes,
)


class _ChoiceBuffer:
    __slots__ = ("finish_reason", "refusal", "role", "text", "tool_calls")

    def __init__(self) -> None:
        self.role: str | None = None
        self.text: list[str] = []
        self.refusal: list[str] = []
        # index -> [id, name, argument fragments]
        self.tool_calls: dict[int, list[Any]] = {}
        self.finish_reason: str | None = None

    def add(self, delta: Any) -> None:
        get = getter(delta)
        role = get("role")
        if role:
            self.role = role
        content = get("content")
        if content:
            self.text.append(content)
        refusal = get("refusal")
        if refusal:
            self.refusal.append(refusal)
        for call in get("tool_calls") or ():
            index = field(call, "index")
            slot = self.tool_calls.setdefault(
                index if isinstance(index, int) else 0, [None, None, []]
            )
            call_id = field(call, "id")
            if call_id:
                slot[0] = call_id
            function = field(call, "function")
            if function is not None:
                name = field(function, "name")
                if name:
                    slot[1] = name
                arguments = field(function, "arguments")
                if arguments:  # None and "" are both "no fragment in this chunk"
                    slot[2].append(arguments)

    def message(self, incomplete: bool) -> dict[str, Any]:
        parts: list[dict[str, Any]] = []
        if self.text:
            parts.append({"type": "text", "content": "".join(self.text)})
        if self.refusal:
            parts.append({"type": "refusal", "content": "".join(self.refusal)})
        for _, (call_id, name, fragments) in sorted(self.tool_calls.items()):
            parts.append(
                {"type": "tool_call", "id": call_id, "name": name, "arguments": "".join(fragments)}
            )
        reason = self.finish_reason or ("incomplete" if incomplete else "error")
        return {
            "role": self.role or "assistant",
            "parts": parts,
            "finish_reason": semconv_finish_reason(reason),
        }


class ChatStreamBuffer:
    """Collects ids, model, usage and every choice's deltas from ``ChatCompletionChunk`` objects."""

    __slots__ = ("choices", "model", "response_id", "usage")

    def __init__(self) -> None:
        self.response_id: str | None = None
        self.model: str | None = None
        self.usage: Any = None
        self.choices: dict[int, _ChoiceBuffer] = {}

    def add(self, chunk: Any) -> None:
        if self.response_id is None:
            self.response_id = field(chunk, "id")
            self.model = field(chunk, "model")
        get = getter(chunk)
        usage = get("usage")
        if given(usage):
            self.usage = usage
        for choice in get("choices") or ():
            of_choice = getter(choice)
            index = of_choice("index")
            buffer = self.choices.get(index)
            if buffer is None:
                buffer = self.choices[index] = _ChoiceBuffer()
            delta = of_choice("delta")
            if delta is not None:
                buffer.add(delta)
            reason = of_choice("finish_reason")
            if reason:
                buffer.finish_reason = reason

    def finished(self) -> bool:
        """Every choice has its finish reason (the last chunk of each arrived)."""
        return bool(self.choices) and all(c.finish_reason for c in self.choices.values())

    def attributes(self, incomplete: bool) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        if self.response_id:
            attrs[sc.RESPONSE_ID] = self.response_id
        if self.model:
            attrs[sc.RESPONSE_MODEL] = self.model
        ordered = [self.choices[i] for i in sorted(self.choices)]
        if ordered:
            attrs[sc.RESPONSE_FINISH_REASONS] = tuple(c.finish_reason or "" for c in ordered)
        attrs[sc.OUTPUT_MESSAGES] = encode_messages([c.message(incomplete) for c in ordered])
        attrs.update(usage_attributes(self.usage))
        return attrs
