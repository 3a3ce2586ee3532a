"""GenAI semantic-convention messages (parts format) to OpenAI's chat fine-tuning format.

This is the inverse of what the instrumentation records, and it also reads the content that other
GenAI instrumentations record (arguments as objects, system instructions apart, several tool
results in one message).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._json import dumps


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else dumps(value)


def _openai_part(part: Mapping[str, Any]) -> dict[str, Any] | None:
    kind = part.get("type")
    if kind == "text":
        return {"type": "text", "text": part.get("content") or ""}
    modality = part.get("modality")
    if kind == "uri" and modality == "image":
        image: dict[str, Any] = {"url": part.get("uri")}
        if part.get("detail"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "blob" and modality == "image":
        url = f"data:{part.get('mime_type') or 'image/png'};base64,{part.get('content') or ''}"
        image = {"url": url}
        if part.get("detail"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "blob" and modality == "audio":
        mime = part.get("mime_type") or "audio/wav"
        return {
            "type": "input_audio",
            "input_audio": {"data": part.get("content"), "format": mime.split("/")[-1]},
        }
    if kind == "file":
        file = {k: part[k] for k in ("file_id", "filename", "file_data") if k in part}
        return {"type": "file", "file": file}
    if "openai" in part and isinstance(part["openai"], Mapping):
        return dict(part["openai"])
    return None


def _tool_call(part: Mapping[str, Any]) -> dict[str, Any]:
    if part.get("tool_type") == "custom":
        return {
            "id": part.get("id"),
            "type": "custom",
            "custom": {"name": part.get("name"), "input": _as_text(part.get("arguments"))},
        }
    arguments = part.get("arguments")
    return {
        "id": part.get("id"),
        "type": "function",
        "function": {
            "name": part.get("name"),
            "arguments": "" if arguments is None else _as_text(arguments),
        },
    }


def to_openai_messages(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One semconv ChatMessage as OpenAI chat messages (a tool message may hold several results)."""
    role = message.get("role")
    parts = [p for p in message.get("parts") or () if isinstance(p, Mapping)]
    if role == "tool":
        return [
            {
                "role": "tool",
                "tool_call_id": part.get("id"),
                "content": _tool_response(part.get("response")),
            }
            for part in parts
            if part.get("type") == "tool_call_response"
        ]
    content: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    out: dict[str, Any] = {"role": role}
    for part in parts:
        kind = part.get("type")
        if kind == "tool_call":
            tool_calls.append(_tool_call(part))
        elif kind == "refusal":
            out["refusal"] = part.get("content")
        elif kind == "reasoning":
            continue  # reasoning is not part of OpenAI's chat training format
        else:
            converted = _openai_part(part)
            if converted is not None:
                content.append(converted)
    if len(content) == 1 and content[0]["type"] == "text":
        out["content"] = content[0]["text"]
    elif content:
        out["content"] = content
    elif role == "assistant":
        if not tool_calls:  # OpenAI's format leaves content out beside tool calls
            out["content"] = None
    else:
        out["content"] = ""
    if tool_calls:
        out["tool_calls"] = tool_calls
    if message.get("name"):
        out["name"] = message["name"]
    return [out]


def _tool_response(response: Any) -> Any:
    if isinstance(response, str):
        return response
    if isinstance(response, list) and all(
        isinstance(p, Mapping) and p.get("type") == "text" for p in response
    ):
        return [{"type": "text", "text": p.get("content") or ""} for p in response]
    return _as_text(response)


def system_message(instructions: Any) -> dict[str, Any] | None:
    """``gen_ai.system_instructions`` (recorded apart from the history) as a system message."""
    if not isinstance(instructions, list) or not instructions:
        return None
    texts = [p.get("content") or "" for p in instructions if isinstance(p, Mapping)]
    return {"role": "system", "content": "\n\n".join(texts)}


def to_openai_chat(input_messages: list[Any], system_instructions: Any) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    system = system_message(system_instructions)
    if system is not None:
        messages.append(system)
    for message in input_messages:
        if isinstance(message, Mapping):
            messages.extend(to_openai_messages(message))
    return messages


def to_openai_tools(definitions: list[Any]) -> list[dict[str, Any]]:
    tools = []
    for definition in definitions:
        if not isinstance(definition, Mapping):
            continue
        kind = definition.get("type") or "function"
        if "name" in definition:
            inner = {k: v for k, v in definition.items() if k != "type"}
            tools.append({"type": kind, kind: inner})
        else:
            tools.append(dict(definition))
    return tools
