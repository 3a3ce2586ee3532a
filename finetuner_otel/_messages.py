"""Reading OpenAI chat messages: their text, and the last question asked."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a message: its content, or its text parts joined ("" for none)."""
    content = message.get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    return content if isinstance(content, str) else ""


def last_user_message(messages: Iterable[Any]) -> Mapping[str, Any] | None:
    """The last user message of a conversation, or None."""
    users = [m for m in messages if isinstance(m, Mapping) and m.get("role") == "user"]
    return users[-1] if users else None
