"""OpenAI messages and content to the GenAI semantic-convention "parts" format: the one builder.

Chat-completions messages, Responses content, both stream buffers and the store's import of
fine-tuning files all build their parts here, so that a streamed and a whole answer, or a
captured and an imported example, give the same parts. ``Parts(limit)`` carries the content cap:
a part whose content is longer than ``limit`` characters is left out (never cut) and says so in
the part; ``Parts()`` caps nothing (an imported file is what its owner chose to train on).

Tool-call arguments are kept as the exact string the SDK sent or received, so a stored example is
byte-for-byte the call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import _semconv as sc
from ._fields import field, given

_DATA_URL = re.compile(r"^data:(?P<mime>[^;,]*)(?P<b64>;base64)?,", re.IGNORECASE)
_FINISH_REASONS = {"tool_calls": "tool_call", "function_call": "tool_call"}
_CAPPED_FIELDS = ("content", "file_data", "uri")
_OMITTED_KEY = f'"{sc.OMITTED_MARKER}":'
_RESPONSES_TEXT = frozenset({"input_text", "output_text", "text"})


def semconv_finish_reason(reason: str) -> str:
    """OpenAI's finish reason in the semconv vocabulary (``tool_calls`` becomes ``tool_call``)."""
    return _FINISH_REASONS.get(reason, reason)


def omitted_content(encoded: str) -> bool:
    """Whether JSON from ``dumps`` holds a part that the cap emptied (the key, unescaped, can
    only be a key: inside JSON strings its quotes would be escaped)."""
    return _OMITTED_KEY in encoded


def media_part(url: Any, modality: str) -> dict[str, Any]:
    """An image or audio given by URL: inline (a base64 data URL) as a blob, else a uri part."""
    if isinstance(url, str):
        match = _DATA_URL.match(url)
        if match and match.group("b64"):
            return {
                "type": "blob",
                "modality": modality,
                "mime_type": match.group("mime") or None,
                "content": url[match.end() :],
            }
    return {"type": "uri", "modality": modality, "uri": url}


def audio_part(audio: Any) -> dict[str, Any]:
    """``{"data": base64, "format": "wav"}`` (either API) as a semconv blob part."""
    fmt = field(audio, "format")
    return {
        "type": "blob",
        "modality": "audio",
        "mime_type": f"audio/{fmt}" if fmt else None,
        "content": field(audio, "data"),
    }


def file_part(file: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """A file reference or inline file (either API) as a semconv file part."""
    out = {"type": "file", "modality": "file"}
    for key in keys:
        value = field(file, key)
        if given(value):
            out[key] = value
    return out


def tool_definitions(tools: Iterable[Any]) -> list[dict[str, Any]]:
    """Tools in the semconv shape (type, name, description, parameters), all other keys kept."""
    out = []
    for tool in tools:
        kind = field(tool, "type")
        inner = field(tool, kind) if isinstance(kind, str) else None
        if isinstance(inner, Mapping) or (inner is not None and not isinstance(inner, str)):
            definition = {"type": kind}
            for key in ("name", "description", "parameters", "strict", "format"):
                value = field(inner, key)
                if given(value):
                    definition[key] = value
            out.append(definition)
        else:
            out.append(dict(tool) if isinstance(tool, Mapping) else {"type": str(kind)})
    return out


def tool_call_part(
    call_id: Any, name: Any, arguments: Any, tool_type: str | None = None
) -> dict[str, Any]:
    part = {"type": "tool_call", "id": call_id, "name": name, "arguments": arguments}
    if tool_type is not None:
        part["tool_type"] = tool_type
    return part


def chat_tool_calls(tool_calls: Any) -> list[dict[str, Any]]:
    """A chat message's ``tool_calls`` (function or custom tools) as tool_call parts."""
    parts = []
    for call in tool_calls or ():
        function = field(call, "function")
        if function is None:  # custom tools carry their input under "custom"
            custom = field(call, "custom")
            parts.append(
                tool_call_part(
                    field(call, "id"), field(custom, "name"), field(custom, "input"), "custom"
                )
            )
        else:
            parts.append(
                tool_call_part(
                    field(call, "id"), field(function, "name"), field(function, "arguments")
                )
            )
    return parts


@dataclass(frozen=True)
class Parts:
    """Builds semconv parts with content over ``limit`` characters left out (None: no cap)."""

    limit: int | None = None

    def cap(self, part: dict[str, Any]) -> dict[str, Any]:
        """Leave out a part's content when it is over the cap, and say so in the part."""
        limit = self.limit
        if limit is None:
            return part
        for key in _CAPPED_FIELDS:
            value = part.get(key)
            if isinstance(value, str) and len(value) > limit:
                part[key] = None
                part[sc.OMITTED_MARKER] = {"field": key, "size": len(value), "limit": limit}
        return part

    def text(self, content: Any) -> dict[str, Any]:
        return self.cap({"type": "text", "content": content})

    def refusal(self, content: Any) -> dict[str, Any]:
        return self.cap({"type": "refusal", "content": content})

    # --- chat completions ---------------------------------------------------------------

    def chat_part(self, part: Any) -> dict[str, Any]:
        """One chat content part (text, image_url, input_audio, file, refusal) as semconv."""
        kind = field(part, "type")
        if kind == "text":
            return self.text(field(part, "text"))
        if kind == "image_url":
            image = field(part, "image_url")
            url = field(image, "url") if not isinstance(image, str) else image
            out = media_part(url, "image")
            detail = field(image, "detail") if not isinstance(image, str) else None
            if given(detail):
                out["detail"] = detail
            return self.cap(out)
        if kind == "input_audio":
            return self.cap(audio_part(field(part, "input_audio")))
        if kind == "file":
            return self.cap(file_part(field(part, "file"), ("file_id", "filename", "file_data")))
        if kind == "refusal":
            return self.refusal(field(part, "refusal"))
        # Unknown part types are kept whole (GenericPart) so nothing is lost.
        return {"type": str(kind), "openai": part}

    def chat_content(self, content: Any) -> list[dict[str, Any]]:
        """A chat message's ``content``: a string, a list of parts, or nothing."""
        if not given(content):
            return []
        if isinstance(content, str):
            return [self.text(content)]
        if not isinstance(content, list | tuple):  # not API input; kept as what it is
            return [{"type": type(content).__name__, "openai": content}]
        return [self.chat_part(part) for part in content]

    def chat_message(self, message: Any) -> dict[str, Any]:
        """One OpenAI chat message (dict or SDK object) as a semconv ChatMessage."""
        if type(message) is dict and len(message) == 2:  # the common {"role", "content": str}
            role = message.get("role")
            content = message.get("content")
            if (
                type(content) is str
                and type(role) is str
                and role not in ("tool", "function")
                and (self.limit is None or len(content) <= self.limit)
            ):
                return {"role": role, "parts": [{"type": "text", "content": content}]}
        role = field(message, "role")
        content = field(message, "content")
        if role == "tool":
            response = content if isinstance(content, str) else self.chat_content(content)
            parts = [
                {
                    "type": "tool_call_response",
                    "id": field(message, "tool_call_id"),
                    "response": response,
                }
            ]
        elif role == "function":  # legacy function results
            parts = [{"type": "tool_call_response", "id": None, "response": content}]
        else:
            parts = self.chat_content(content)
            refusal = field(message, "refusal")
            if given(refusal):
                parts.append(self.refusal(refusal))
            parts.extend(chat_tool_calls(field(message, "tool_calls")))
            legacy = field(message, "function_call")
            if given(legacy):
                parts.append(
                    tool_call_part(
                        None, field(legacy, "name"), field(legacy, "arguments"), "function_call"
                    )
                )
        out: dict[str, Any] = {"role": role, "parts": parts}
        name = field(message, "name")
        if given(name):
            out["name"] = name
        return out

    def chat_output(self, message: Any, finish_reason: Any) -> dict[str, Any]:
        """One choice's message as a semconv OutputMessage."""
        out = self.chat_message(message)
        out["role"] = out.get("role") or "assistant"
        reason = finish_reason if isinstance(finish_reason, str) else "error"
        out["finish_reason"] = semconv_finish_reason(reason)
        return out

    # --- Responses ---------------------------------------------------------------------------

    def responses_part(self, part: Any) -> dict[str, Any]:
        """One Responses content part (input or output) as a semconv part."""
        kind = field(part, "type")
        if kind in _RESPONSES_TEXT:
            return self.text(field(part, "text"))
        if kind == "refusal":
            return self.refusal(field(part, "refusal"))
        if kind == "input_image":
            url = field(part, "image_url")
            if given(url):
                out = media_part(url, "image")
            else:
                out = {"type": "file", "modality": "image", "file_id": field(part, "file_id")}
            detail = field(part, "detail")
            if given(detail) and detail != "auto":
                out["detail"] = detail
            return self.cap(out)
        if kind == "input_file":
            return self.cap(file_part(part, ("file_id", "filename", "file_data", "file_url")))
        if kind == "input_audio":
            return self.cap(audio_part(field(part, "input_audio")))
        return {"type": str(kind), "openai": part}  # kept whole, so nothing is lost

    def responses_content(self, content: Any) -> list[dict[str, Any]]:
        if isinstance(content, str):
            return [self.text(content)]
        if not given(content):
            return []
        return [self.responses_part(p) for p in content]
