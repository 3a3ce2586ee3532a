"""Redaction: rewrite the text of each call before anything is recorded.

``instrument(redact=...)`` (or ``FINETUNER_REDACT=email,phone,api_key``) takes a function of a
text, or a list of regular expressions and built-in names; every match becomes
``[REDACTED:<name>]``. It runs on the message text, tool-call arguments and tool results, and
the request options, in the app's process, before the span is given its attributes: nothing
unredacted reaches the span, the spool or the store. Images, audio and files (base64 or URLs)
are left as they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._errors import ConfigurationError

# Built-in patterns: e-mail addresses, phone numbers (8 or more digits, with the usual
# separators), and common API key formats (OpenAI, AWS, GitHub, Slack, Google, Stripe, bearer).
BUILTIN: dict[str, str] = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    # Not an ISO date (2026-12-01) or an IPv4 address, which have as many digits.
    "phone": (
        r"(?<![\w+.-])(?!\d{4}-\d{2}-\d{2}(?![\d.-]))(?!\d{1,3}(?:\.\d{1,3}){3}(?![\d.]))"
        r"\+?\d(?:[ ().-]{0,2}\d){7,14}(?!\w)"
    ),
    "api_key": (
        r"\b(?:sk-(?:proj-|ant-|live_|test_)?[A-Za-z0-9_-]{16,}"
        r"|(?:AKIA|ASIA)[0-9A-Z]{16}"
        r"|gh[pousr]_[A-Za-z0-9]{36,}"
        r"|xox[abprs]-[A-Za-z0-9-]{10,}"
        r"|AIza[0-9A-Za-z_-]{35}"
        r"|(?:rk|pk)_(?:live|test)_[A-Za-z0-9]{16,})\b"
        r"|(?<=Bearer )[A-Za-z0-9._~+/-]{16,}=*"
    ),
}

RedactSpec = Callable[[str], str] | str | Iterable["str | re.Pattern[str]"]

# The part types whose "content" is text, and those left alone (binary or references).
_TEXT_PARTS = frozenset({"text", "refusal", "reasoning"})


class Redactor:
    """Applies a text function, or a list of patterns, to the text of a call."""

    def __init__(self, spec: RedactSpec) -> None:
        if callable(spec):
            self._function: Callable[[str], str] | None = spec
            self.patterns: list[tuple[re.Pattern[str], str]] = []
            return
        items = [spec] if isinstance(spec, str | re.Pattern) else list(spec)
        if not items:
            raise ConfigurationError("redact= needs a function, or at least one pattern or name")
        patterns = []
        for item in items:
            if isinstance(item, re.Pattern):
                patterns.append((item, "[REDACTED]"))
            elif isinstance(item, str) and item in BUILTIN:
                patterns.append((re.compile(BUILTIN[item]), f"[REDACTED:{item}]"))
            elif isinstance(item, str):
                try:
                    patterns.append((re.compile(item), "[REDACTED]"))
                except re.error as exc:
                    raise ConfigurationError(
                        f"redact: {item!r} is neither a built-in ({', '.join(BUILTIN)}) nor a "
                        f"regular expression ({exc})"
                    ) from None
            else:
                raise ConfigurationError(
                    f"redact= takes a function, or built-in names ({', '.join(BUILTIN)}) and "
                    f"regular expressions; got {item!r}"
                )
        self._function = None
        self.patterns = patterns

    def text(self, value: str) -> str:
        if self._function is not None:
            result = self._function(value)
            if not isinstance(result, str):
                raise TypeError(f"the redact function returned {type(result).__name__}, not str")
            return result
        for pattern, replacement in self.patterns:
            value = pattern.sub(replacement, value)
        return value

    def value(self, value: Any) -> Any:
        """Every string in a JSON-like value (request options, tool arguments)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value

    def part(self, part: Any) -> Any:
        if not isinstance(part, Mapping):
            return part
        kind = part.get("type")
        if kind in _TEXT_PARTS and isinstance(part.get("content"), str):
            return {**part, "content": self.text(part["content"])}
        if kind == "tool_call" and "arguments" in part:
            return {**part, "arguments": self.value(part["arguments"])}
        if kind == "tool_call_response" and "response" in part:
            response = part["response"]
            redacted = (
                [self.part(p) for p in response]
                if isinstance(response, list)
                else self.value(response)
            )
            return {**part, "response": redacted}
        return part  # uri, blob, file: left as they are

    def messages(self, messages: Iterable[Any]) -> list[Any]:
        """Semconv messages (or system-instruction parts) with their text redacted."""
        out = []
        for message in messages:
            if isinstance(message, Mapping) and isinstance(message.get("parts"), list):
                out.append({**message, "parts": [self.part(p) for p in message["parts"]]})
            else:
                out.append(self.part(message))
        return out


def make_redactor(spec: RedactSpec | None) -> Redactor | None:
    if spec is None or spec == "" or spec == []:
        return None
    if isinstance(spec, Redactor):
        return spec
    return Redactor(spec)


def from_environment(value: str | None) -> Redactor | None:
    """``FINETUNER_REDACT``: built-in names, separated by commas."""
    if not value or not value.strip():
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in BUILTIN]
    if unknown:
        raise ConfigurationError(
            f"FINETUNER_REDACT names {unknown}; it takes {', '.join(BUILTIN)} (separated by "
            f"commas). Pass regular expressions or a function as instrument(redact=...)"
        )
    return Redactor(names)
