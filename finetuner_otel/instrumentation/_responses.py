"""The Responses API (``responses.create``, and ``responses.stream`` which calls it) as the same
GenAI semantic-convention attributes the chat-completions API gives, so that a dataset can mix
both: ``instructions`` become system instructions, ``input`` items become chat messages (function
calls join the assistant message before them, their outputs become tool messages, reasoning
summaries become ``reasoning`` parts), and the response's output items become one assistant
message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import _semconv as sc
from .._fields import field, given
from .._parts import Parts, tool_call_part
from ._content import NOT_OPTIONS, add_content, base_request_attributes, response_identity
from ._options import CaptureOptions

_NUMERIC_PARAMS = {"temperature": sc.REQUEST_TEMPERATURE, "top_p": sc.REQUEST_TOP_P}
_NOT_OPTIONS = NOT_OPTIONS | {"input", "instructions", "max_output_tokens", "text_format"}
_INCOMPLETE_REASONS = {"max_output_tokens": "length", "content_filter": "content_filter"}


def _tool_call(item: Any) -> dict[str, Any]:
    custom = field(item, "type") == "custom_tool_call"
    return tool_call_part(
        field(item, "call_id"),
        field(item, "name"),
        field(item, "input" if custom else "arguments"),
        "custom" if custom else None,
    )


def _reasoning(item: Any) -> dict[str, Any] | None:
    texts = [field(s, "text") for s in field(item, "summary") or ()]
    texts = [t for t in texts if isinstance(t, str) and t]
    return {"type": "reasoning", "content": "\n\n".join(texts)} if texts else None


class _Conversation:
    """Builds semconv messages from Responses items, merging what chat keeps in one message."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.messages: list[dict[str, Any]] = []
        self._reasoning: list[dict[str, Any]] = []  # waits for the assistant turn it belongs to

    def _assistant(self) -> dict[str, Any]:
        last = self.messages[-1] if self.messages else None
        if last is None or last["role"] != "assistant":
            last = {"role": "assistant", "parts": []}
            self.messages.append(last)
        return last

    def add(self, item: Any) -> None:
        if isinstance(item, str):  # a bare string in an input list is a user message
            self.messages.append({"role": "user", "parts": [self.parts.text(item)]})
            return
        kind = field(item, "type")
        role = field(item, "role")
        if kind in (None, "message") and role:
            parts = self.parts.responses_content(field(item, "content"))
            if role == "assistant":
                message = self._assistant()
                message["parts"][:0] = self._reasoning  # reasoning comes first in a turn
                self._reasoning = []
                message["parts"].extend(parts)
            else:
                self.messages.append({"role": role, "parts": parts})
        elif kind in ("function_call", "custom_tool_call"):
            message = self._assistant()
            message["parts"][:0] = self._reasoning
            self._reasoning = []
            message["parts"].append(_tool_call(item))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            last = self.messages[-1] if self.messages else None
            if last is None or last["role"] != "tool":
                last = {"role": "tool", "parts": []}
                self.messages.append(last)
            last["parts"].append(
                {
                    "type": "tool_call_response",
                    "id": field(item, "call_id"),
                    "response": self._output(item),
                }
            )
        elif kind == "reasoning":
            part = _reasoning(item)
            if part is not None:
                self._reasoning.append(part)
        else:
            self.messages.append(
                {"role": role or "user", "parts": [{"type": str(kind), "openai": item}]}
            )

    def _output(self, item: Any) -> Any:
        output = field(item, "output")
        if isinstance(output, str) or not given(output):
            return output
        return [self.parts.responses_part(p) for p in output]

    def finish(self) -> list[dict[str, Any]]:
        if self._reasoning and self.messages and self.messages[-1]["role"] == "assistant":
            self.messages[-1]["parts"][:0] = self._reasoning
        self._reasoning = []
        return self.messages


def input_messages(value: Any, parts: Parts) -> list[dict[str, Any]]:
    """``input``: a string (one user message) or a list of items."""
    if isinstance(value, str):
        return [{"role": "user", "parts": [parts.text(value)]}]
    conversation = _Conversation(parts)
    for item in value:
        conversation.add(item)
    return conversation.finish()


def request_attributes(
    kwargs: Mapping[str, Any], instance: Any, options: CaptureOptions
) -> dict[str, Any]:
    """Span attributes known before a Responses call."""
    attrs = base_request_attributes(kwargs, instance, "responses", _NUMERIC_PARAMS)
    max_tokens = kwargs.get("max_output_tokens")
    if given(max_tokens) and isinstance(max_tokens, int):
        attrs[sc.REQUEST_MAX_TOKENS] = max_tokens
    instructions = kwargs.get("instructions")
    if given(instructions) and isinstance(instructions, str):
        attrs[sc.SYSTEM_INSTRUCTIONS] = options.encode_messages([options.parts.text(instructions)])
    text = kwargs.get("text")
    fmt = field(text, "format") if given(text) else None
    if fmt is not None:
        attrs[sc.OUTPUT_TYPE] = "text" if field(fmt, "type") == "text" else "json"
    items: Any = kwargs.get("input")
    converted = input_messages(items, options.parts) if given(items) else None
    return add_content(attrs, converted, kwargs, _NOT_OPTIONS, options)


def output_message(response: Any, parts: Parts) -> tuple[dict[str, Any], str]:
    """The response's output items as one assistant message, and its semconv finish reason."""
    conversation = _Conversation(parts)
    calls = False
    for item in field(response, "output") or ():
        kind = field(item, "type")
        calls = calls or kind in ("function_call", "custom_tool_call")
        if kind in ("function_call", "custom_tool_call", "reasoning") or (
            kind == "message" and field(item, "role") == "assistant"
        ):
            conversation.add(item)
    messages = conversation.finish()
    message = messages[0] if messages else {"role": "assistant", "parts": []}
    status = field(response, "status")
    if status == "completed":
        reason = "tool_call" if calls else "stop"
    elif status == "incomplete":
        details = field(response, "incomplete_details")
        reason = _INCOMPLETE_REASONS.get(field(details, "reason"), "length")
    else:  # failed, cancelled, or still queued (background=True)
        reason = "error"
    message["finish_reason"] = reason
    return message, reason


def response_attributes(response: Any, options: CaptureOptions) -> dict[str, Any]:
    """Span attributes from a whole ``Response``."""
    attrs = response_identity(response)
    message, reason = output_message(response, options.parts)
    attrs[sc.RESPONSE_FINISH_REASONS] = (reason,)
    attrs[sc.OUTPUT_MESSAGES] = options.encode_messages([message])
    usage = field(response, "usage")
    if usage is not None:
        for key, attr in (
            ("input_tokens", sc.USAGE_INPUT_TOKENS),
            ("output_tokens", sc.USAGE_OUTPUT_TOKENS),
        ):
            value = field(usage, key)
            if isinstance(value, int):
                attrs[attr] = value
    return attrs


def is_response(result: Any) -> bool:
    return hasattr(result, "output") and hasattr(result, "status")


class ResponsesStreamBuffer:
    """Collects a Responses event stream. The terminal event (``response.completed``,
    ``.incomplete`` or ``.failed``) carries the whole response; without one, what arrived is
    recorded from the finished output items and the text deltas."""

    __slots__ = ("final", "items", "model", "options", "response_id", "text")

    def __init__(self, options: CaptureOptions) -> None:
        self.options = options
        self.final: Any = None
        self.response_id: str | None = None
        self.model: str | None = None
        self.items: dict[int, Any] = {}  # output_index -> finished item
        self.text: dict[int, list[str]] = {}  # output_index -> text deltas so far

    def add(self, event: Any) -> None:
        kind = field(event, "type")
        if kind == "response.output_text.delta":
            self.text.setdefault(field(event, "output_index") or 0, []).append(
                field(event, "delta") or ""
            )
        elif kind == "response.output_item.done":
            self.items[field(event, "output_index") or 0] = field(event, "item")
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            self.final = field(event, "response")
        elif kind == "response.created":
            response = field(event, "response")
            self.response_id = field(response, "id")
            self.model = field(response, "model")

    def finished(self) -> bool:
        return self.final is not None

    def attributes(self, incomplete: bool) -> dict[str, Any]:
        options = self.options
        if self.final is not None:
            return response_attributes(self.final, options)
        attrs: dict[str, Any] = {}
        if self.response_id:
            attrs[sc.RESPONSE_ID] = self.response_id
        if self.model:
            attrs[sc.RESPONSE_MODEL] = self.model
        conversation = _Conversation(options.parts)
        for index in sorted(set(self.items) | set(self.text)):
            item = self.items.get(index)
            if item is not None:
                conversation.add(item)
            else:
                text = "".join(self.text[index])
                conversation.add({"type": "message", "role": "assistant", "content": text})
        messages = conversation.finish()
        message = messages[0] if messages else {"role": "assistant", "parts": []}
        message["finish_reason"] = "error"
        attrs[sc.RESPONSE_FINISH_REASONS] = ("error",)
        attrs[sc.OUTPUT_MESSAGES] = options.encode_messages([message])
        return attrs
