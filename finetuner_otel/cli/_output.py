"""How the CLI prints: tables for people, JSON / CSV / newline-delimited JSON for scripts."""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any, TextIO

# What a terminal would act on rather than show: C0 and C1 controls (ESC starts a sequence that
# can rewrite the screen, the title or the clipboard), and the bidirectional overrides and
# isolates that reorder the text around them ("Trojan Source").
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with the characters a terminal would act on written as escapes (``\\x1b``)."""

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        if keep_newlines and char == "\n":
            return char
        return repr(char)[1:-1]  # \x1b, \u202e: what Python would write

    return _CONTROL.sub(escape, text)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def _cell(value: Any, width: int = 60) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S")
    elif isinstance(value, Mapping | list | tuple):
        text = json.dumps(_plain(value), ensure_ascii=False)
    else:
        text = str(value)
    text = printable(text.replace("\n", " "))
    return text if len(text) <= width else text[: width - 1] + "…"


class Output:
    """Where and how results go: ``mode`` is table, json, csv or nl."""

    def __init__(self, mode: str, quiet: bool = False, out: TextIO | None = None) -> None:
        self.mode = mode
        self.quiet = quiet
        self.out = out or sys.stdout

    def rows(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if self.mode == "json":
            records = [dict(zip(columns, map(_plain, row), strict=True)) for row in rows]
            self.out.write(json.dumps(records, ensure_ascii=False, indent=2) + "\n")
        elif self.mode == "nl":
            for row in rows:
                record = dict(zip(columns, map(_plain, row), strict=True))
                self.out.write(json.dumps(record, ensure_ascii=False) + "\n")
        elif self.mode == "csv":
            writer = csv.writer(self.out, lineterminator="\n")
            writer.writerow(columns)
            for row in rows:
                writer.writerow(
                    [
                        json.dumps(_plain(v), ensure_ascii=False)
                        if isinstance(v, Mapping | list | tuple)
                        else ("" if v is None else _plain(v))
                        for v in row
                    ]
                )
        else:
            self.table(columns, rows)

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        columns = [printable(c) for c in columns]
        cells = [[_cell(v) for v in row] for row in rows]
        widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
        numeric = [
            all(isinstance(row[i], int | float) or row[i] is None for row in rows) and bool(rows)
            for i in range(len(columns))
        ]

        def line(values: Sequence[str]) -> str:
            parts = [
                v.rjust(w) if num else v.ljust(w)
                for v, w, num in zip(values, widths, numeric, strict=True)
            ]
            return "  ".join(parts).rstrip()

        self.out.write(line(columns) + "\n")
        self.out.write("  ".join("-" * w for w in widths) + "\n")
        for row in cells:
            self.out.write(line(row) + "\n")
        if not rows and not self.quiet:
            self.out.write("(no rows)\n")

    def record(self, value: Mapping[str, Any]) -> None:
        """One object: JSON for scripts, ``key: value`` lines for people."""
        if self.mode in ("json", "nl"):
            indent = 2 if self.mode == "json" else None
            self.out.write(json.dumps(_plain(value), ensure_ascii=False, indent=indent) + "\n")
            return
        width = max((len(k) for k in value), default=0)
        for key, item in value.items():
            text = (
                printable(
                    json.dumps(_plain(item), ensure_ascii=False, indent=2), keep_newlines=True
                )
                if isinstance(item, Mapping | list)
                else _cell(item, 10_000)
            )
            self.out.write(f"{printable(key).ljust(width)}  {text}\n")

    def text(self, message: str) -> None:
        """A line for people; left out with -q and in the machine-readable modes."""
        if not self.quiet and self.mode == "table":
            self.lines(message)

    def lines(self, text: str) -> None:
        """Text for people (a summary, a report), its control characters escaped."""
        self.out.write(printable(text, keep_newlines=True) + "\n")
