"""HTML pieces that the eval report and the UI both draw: a word diff of an answer against its
target, and the accuracy chart with its intervals. Every text in them is escaped."""

from __future__ import annotations

import difflib
import html
from collections.abc import Sequence
from typing import Any

from ._json import dumps


def text_of(value: Any) -> str:
    """A value as text: a string as it is, anything else as its JSON."""
    return value if isinstance(value, str) else dumps(value)


def word_diff(target: Any, prediction: Any) -> str:
    """The prediction against the target, word by word: <del> what is missing, <ins> extra."""
    expected, got = text_of(target).split(" "), text_of(prediction).split(" ")
    out = []
    for op, a1, a2, b1, b2 in difflib.SequenceMatcher(None, expected, got).get_opcodes():
        if op == "equal":
            out.append(html.escape(" ".join(expected[a1:a2])))
            continue
        if a2 > a1:
            out.append(f"<del>{html.escape(' '.join(expected[a1:a2]))}</del>")
        if b2 > b1:
            out.append(f"<ins>{html.escape(' '.join(got[b1:b2]))}</ins>")
    return " ".join(out)


def accuracy_chart(bars: Sequence[tuple[str, float, float, float]]) -> str:
    """Horizontal bars of accuracy with 95% interval whiskers, one per (label, accuracy, low,
    high), as inline SVG (the labels escaped)."""
    left, width, row = 230, 520, 34
    height = row * len(bars) + 40
    parts = [
        f'<svg role="img" aria-label="Accuracy per model with 95% intervals" '
        f'width="{left + width + 80}" height="{height}" viewBox="0 0 {left + width + 80} {height}">'
    ]
    for tick in range(0, 101, 25):
        x = left + width * tick / 100
        parts.append(
            f'<line x1="{x}" y1="8" x2="{x}" y2="{height - 24}" stroke="#d0d7de"/>'
            f'<text x="{x}" y="{height - 8}" text-anchor="middle">{tick}%</text>'
        )
    for i, (label, accuracy, low, high) in enumerate(bars):
        y = 12 + i * row
        if len(label) > 30:
            label = label[:29] + "…"
        parts.append(
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{html.escape(label)}</text>'
            f'<rect x="{left}" y="{y + 3}" width="{width * accuracy:.1f}" height="18" '
            f'fill="#0969da" rx="2"><title>{accuracy:.1%}</title></rect>'
            f'<line x1="{left + width * low:.1f}" y1="{y + 12}" x2="{left + width * high:.1f}" '
            f'y2="{y + 12}" stroke="#1f2328" stroke-width="2"/>'
            f'<line x1="{left + width * low:.1f}" y1="{y + 6}" x2="{left + width * low:.1f}" '
            f'y2="{y + 18}" stroke="#1f2328" stroke-width="2"/>'
            f'<line x1="{left + width * high:.1f}" y1="{y + 6}" x2="{left + width * high:.1f}" '
            f'y2="{y + 18}" stroke="#1f2328" stroke-width="2"/>'
            f'<text x="{left + width + 8}" y="{y + 16}">{accuracy:.1%}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
