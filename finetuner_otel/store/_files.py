"""The spool's files, written and listed without DuckDB: what an app process needs of the store.

An app that captures calls only ever writes spool files (its ingest helper opens the DuckDB
file), so this module, and everything ``finetuner_otel.store.spool`` and the exporter import at
load time, imports no DuckDB: the library alone is about 15 MB of the app's memory.

Each spool file is written to a temporary name and renamed into place (the rename is atomic, so
a file under its final name is always whole); every file and directory made here is its
owner's alone (0600, 0700).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path

SUFFIX = ".jsonl"
REASON_SUFFIX = ".reason.txt"
TMP_SUFFIX = ".tmp"
_counter = itertools.count()


def private_dir(path: Path) -> None:
    """``path`` and each missing parent, made owner-only (0700)."""
    if path.is_dir():
        return
    if not path.parent.exists():
        private_dir(path.parent)
    path.mkdir(mode=0o700, exist_ok=True)


def _fsync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make the names in a directory durable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory fds
        return
    _fsync_and_close(fd)


def fsync_file(path: Path) -> bool:
    """Make a file written without ``sync`` durable; False if it is gone (ingested already)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    _fsync_and_close(fd)
    return True


def write_new(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Write ``path`` whole (fsynced unless ``sync`` is False), owner-only (0600); it must not
    exist yet."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        if sync:
            fh.flush()
            os.fsync(fh.fileno())


def write_private(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Write ``path`` whole or not at all (a temporary name, fsync, rename), owner-only (0600).
    On any error (a full disk) nothing is left under either name. ``sync`` False leaves the
    fsync to the caller (``fsync_file``): the file is whole under its name all the same."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{next(_counter)}{TMP_SUFFIX}")
    try:
        write_new(tmp, data, sync=sync)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _utf8(lines: list[str]) -> bytes:
    data = "".join(line + "\n" for line in lines)
    try:
        return data.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (from text that was never valid Unicode) cannot be stored as UTF-8;
        # each becomes U+FFFD rather than costing the whole batch.
        return data.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")


def write_spool(spool_dir: Path, lines: list[str], *, sync: bool = True) -> Path | None:
    """Write spool lines (each made by ``encode_row``) as one spool file; returns its path (None
    when there were no lines). Durable on return unless ``sync`` is False: then the file and
    the directory entry wait for ``fsync_file(path)`` and ``fsync_dir(spool_dir)``."""
    if not lines:
        return None
    data = _utf8(lines)
    private_dir(spool_dir)
    name = f"{time.time_ns():020d}-{os.getpid()}-{threading.get_ident()}-{next(_counter)}"
    final = spool_dir / (name + SUFFIX)
    write_private(final, data, sync=sync)
    if sync:
        fsync_dir(spool_dir)
    return final


def pending_files(spool_dir: Path) -> list[Path]:
    """Spooled files waiting for ingest, oldest first."""
    try:
        names = sorted(
            entry.name
            for entry in os.scandir(spool_dir)
            if entry.name.endswith(SUFFIX) and entry.is_file()
        )
    except FileNotFoundError:
        return []
    return [spool_dir / name for name in names]
