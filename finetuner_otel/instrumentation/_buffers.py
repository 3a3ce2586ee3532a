"""Accumulates streamed chat-completion chunks into the same attributes a whole response gives."""

from __future__ import annotations

from typing import Any

from .. import _semconv as sc
from .._fields import field, getter, given
from .._parts import Parts, semconv_finish_reason, tool_call_part
from ._content import usage_attributes
from ._options import CaptureOptions


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

    def message(self, build: Parts, incomplete: bool) -> dict[str, Any]:
        """The choice's message, built as a whole message's would be (capped alike)."""
        parts: list[dict[str, Any]] = []
        if self.text:
            parts.append(build.text("".join(self.text)))
        if self.refusal:
            parts.append(build.refusal("".join(self.refusal)))
        for _, (call_id, name, fragments) in sorted(self.tool_calls.items()):
            parts.append(tool_call_part(call_id, name, "".join(fragments)))
        reason = self.finish_reason or ("incomplete" if incomplete else "error")
        return {
            "role": self.role or "assistant",
            "parts": parts,
            "finish_reason": semconv_finish_reason(reason),
        }


class ChatStreamBuffer:
    """Collects ids, model, usage and every choice's deltas from ``ChatCompletionChunk`` objects."""

    __slots__ = ("choices", "model", "options", "response_id", "usage")

    def __init__(self, options: CaptureOptions) -> None:
        self.options = options
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
        options = self.options
        attrs[sc.OUTPUT_MESSAGES] = options.encode_messages(
            [c.message(options.parts, incomplete) for c in ordered]
        )
        attrs.update(usage_attributes(self.usage))
        return attrs
