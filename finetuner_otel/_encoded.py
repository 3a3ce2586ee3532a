"""The JSON texts of message attributes our instrumentation encoded, with the values they were
encoded from, so that the store's exporter does not parse them back (a 2 KB prompt's parse was
about a third of the encoding of its row).

Only a text that is the very object our instrumentation made (``take`` checks identity, not
equality) stands for its value: a span of the same scope that another process sent, or a value
changed by anyone since, is a different string and is parsed as always. Only values encoded
without ``dumps``' fallback are kept (so the value holds nothing but what parsing the text gives
back), and the store's exporter still checks each text is safe in a line (``known_json``).

Kept only in a process with a store exporter (``enable``), and bounded: the exporter takes each
call's texts as its span ends, so what stays here is the texts of calls still running; past the
bound the oldest go, and their spans' texts are parsed.
"""

from __future__ import annotations

import contextlib
from typing import Any

MAX_KEPT = 512
_kept: dict[int, tuple[str, Any]] = {}
_enabled = False


def enable() -> None:
    """Keep encoded texts from now on (a store exporter of this process takes them)."""
    global _enabled
    _enabled = True


def enabled() -> bool:
    """Whether texts are kept (a store exporter of this process takes them)."""
    return _enabled


def remember(text: str, value: Any) -> None:
    """``text`` was encoded from ``value`` by our instrumentation, with no fallback."""
    if not _enabled:
        return
    kept = _kept
    if len(kept) >= MAX_KEPT:
        # another thread may change it meanwhile: then the next call removes one
        with contextlib.suppress(RuntimeError, StopIteration, KeyError):
            del kept[next(iter(kept))]
    kept[id(text)] = (text, value)


def take(text: str) -> tuple[bool, Any]:
    """(True, the value) when ``text`` is one our instrumentation encoded and it is still kept
    (it is not kept any more), else (False, None)."""
    entry = _kept.pop(id(text), None)
    if entry is None or entry[0] is not text:
        return False, None
    return True, entry[1]
