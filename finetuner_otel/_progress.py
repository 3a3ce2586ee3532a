"""One progress display for the library's long work (eval runs, fine-tuning jobs), drawn by tqdm.

A ``progress`` argument means the same everywhere: ``True`` shows progress on stderr when it is a
terminal; a file (the CLI passes its stderr) is always written: the bar redrawn in place on a
terminal, each redraw a line of its own otherwise, so that a log stays readable; ``False``
shows nothing. ``note`` prints a line above the bar (a job's events, a retry).

tqdm rather than rich: the openai SDK already depends on it (no new dependency), it writes to
any file, and ``tqdm.write`` keeps lines above a live bar.
"""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import TYPE_CHECKING, NoReturn, TextIO

from tqdm import tqdm

if TYPE_CHECKING:
    _Tqdm = tqdm[NoReturn]  # a bar updated by hand, over no iterable
else:
    _Tqdm = tqdm  # generic only in its type stubs


def destination(progress: bool | TextIO | None) -> TextIO | None:
    """Where ``progress`` goes: stderr when it is a terminal (True), the file given, or nowhere."""
    if progress is True:
        return sys.stderr if _is_terminal(sys.stderr) else None
    if progress is False or progress is None:
        return None
    return progress


def _is_terminal(out: TextIO) -> bool:
    isatty = getattr(out, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except ValueError:  # a closed file
        return False


class _Bar(_Tqdm):
    monitor_interval = 0  # no background thread per process: our bars are redrawn on update


class _Lines:
    """A file for tqdm that writes each redraw of the bar (tqdm starts those with a carriage
    return) as a line of its own, skipping blank ones and repeats; other text passes through."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.last = ""

    def write(self, text: str) -> int:
        if not text.startswith("\r"):
            return self.out.write(text)
        line = text.strip("\r").rstrip()
        if line and line != self.last:
            self.last = line
            self.out.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.out.flush()


class Progress:
    """A progress bar with a label, counted in ``total`` steps (unknown: the label alone).

    ``bar_format`` is tqdm's, used once the total is known (default: tqdm's own bar with the
    count, time and rate). Safe to advance from several threads. A context manager.
    """

    def __init__(
        self,
        progress: bool | TextIO | None,
        label: str,
        *,
        total: int | None = None,
        unit: str = "it",
        bar_format: str | None = None,
    ) -> None:
        out = destination(progress)
        self._file: TextIO | _Lines | None = out
        if out is not None and not _is_terminal(out):
            self._file = _Lines(out)
        self._format = bar_format
        self._lock = threading.Lock()
        self._errors = 0
        self._bar = _Bar(
            total=total,
            desc=label,
            unit=unit,
            file=self._file,  # _Lines is file enough for tqdm: write() and flush()
            disable=out is None,
            bar_format=self._format_for(total),
            dynamic_ncols=True,
            mininterval=0 if isinstance(self._file, _Lines) else 0.1,
            miniters=max((total or 0) // 10, 1) if isinstance(self._file, _Lines) else None,
        )

    def _format_for(self, total: int | None) -> str | None:
        return "{desc}" if total is None else self._format

    def advance(self, *, error: bool = False) -> None:
        """One more step done; ``error``: it failed (the bar counts those apart)."""
        with self._lock:
            if error:
                self._errors += 1
                errors = "1 error" if self._errors == 1 else f"{self._errors} errors"
                self._bar.set_postfix_str(errors, refresh=False)
            self._bar.update(1)

    def show(self, label: str, *, done: int | None = None, total: int | None = None) -> None:
        """Redraw with a new label and, when given, how far it is (``done`` of ``total``)."""
        with self._lock:
            if total is not None and total != self._bar.total:
                self._bar.total = total
                self._bar.bar_format = self._format_for(total)
            if done is not None:
                self._bar.n = done
            self._bar.set_description_str(label, refresh=True)

    def note(self, text: str) -> None:
        """A line above the bar."""
        if self._file is not None:
            with self._lock:
                self._bar.write(text, file=self._file)

    def close(self) -> None:
        with self._lock:
            if isinstance(self._file, _Lines):
                if self._bar.n != self._bar.last_print_n:
                    self._bar.refresh()  # the last count, throttled away so far
                self._bar.leave = False  # a line-by-line log has the last line already
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
