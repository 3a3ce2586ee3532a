"""Chain-of-thought mode: the model reasons first, in a fixed format, then answers.

A ``Prompt(..., chain_of_thought=True)`` asks for ``<reasoning>...</reasoning>`` followed by
``<answer>...</answer>``. The store keeps the completion whole and shows the two apart
(``calls.rationale``, ``calls.answer``); exports train on the answer only or on rationale plus
answer (``to_jsonl(rationale=...)``), and evals compare the final answer only. Reasoning models'
own summaries are kept as semconv ``reasoning`` parts, never in the training target.
"""

from __future__ import annotations

import re
from typing import Any

INSTRUCTION = (
    "Think the problem through step by step first, inside <reasoning>...</reasoning>. Then give "
    "only the final answer inside <answer>...</answer>."
)
# The format, in syntax both Python's re and DuckDB's RE2 read alike: the store's cot_split()
# macro (store/views.sql) is made from this same text.
PATTERN = (
    r"(?s)^\s*<reasoning>(?P<reasoning>.*?)</reasoning>\s*<answer>(?P<answer>.*?)</answer>\s*$"
)
_FORMAT = re.compile(PATTERN)


def split_rationale(text: str) -> tuple[str | None, str]:
    """(reasoning, answer) of a chain-of-thought completion; (None, text) for any other text."""
    match = _FORMAT.match(text)
    if match is None:
        return None, text
    return match.group("reasoning").strip(), match.group("answer").strip()


def answer_only(message: dict[str, Any]) -> dict[str, Any]:
    """The assistant message with a chain-of-thought content cut to its final answer."""
    content = message.get("content")
    if not isinstance(content, str):
        return message
    reasoning, answer = split_rationale(content)
    return message if reasoning is None else {**message, "content": answer}
