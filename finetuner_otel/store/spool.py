"""The store's spool, for the code that writes calls into a store from outside a ``Store``: the
OTel exporter (``finetuner_otel.exporters``) and receivers.

A call becomes one spool line by ``encode_row(CallRecord(...))`` (the one encoder of stored
rows; ``parse_json`` reads a JSON attribute for it), ``write_spool`` writes a batch of lines as
one file beside the store (owner-only, renamed into place; fsynced unless ``sync=False``,
which leaves it to ``fsync_file`` and ``fsync_dir``), and ``ingest`` moves every
spooled file into the store that ``Settings.store`` names: the DuckDB file when it is free, or
the lake. ``write_private`` writes any other file the same owner-only way.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ._files import fsync_dir, fsync_file, write_private, write_spool
from ._files import pending_files as pending
from ._rows import CallRecord, JSONValue, encode_row, known_json, parse_json

if TYPE_CHECKING:
    from .._settings import Lake


def ingest(target: Path | Lake, spool_dir: Path, *, wait: float = 10.0) -> int:
    """Move every spooled file into ``target`` (a DuckDB file or a lake); the number of files
    taken. DuckDB loads here, on the first ingest, not with this module."""
    from ._lake import ingest_into

    return ingest_into(target, spool_dir, wait=wait)


def keep_instance() -> None:
    """From now on, ``ingest`` into a DuckDB file attaches it to one DuckDB that this process
    keeps (the ingest helper's: a process of its own, for one store), instead of starting one
    for each ingest. DuckDB loads here."""
    from ._connection import keep_instance as keep

    keep()


__all__ = [
    "CallRecord",
    "JSONValue",
    "encode_row",
    "fsync_dir",
    "fsync_file",
    "ingest",
    "keep_instance",
    "known_json",
    "parse_json",
    "pending",
    "write_private",
    "write_spool",
]
