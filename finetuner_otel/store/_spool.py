"""The spool: durable files of rows waiting to be ingested into the DuckDB store.

Exporters never open the DuckDB file. Each ``write`` is one file, written to a temporary name,
fsynced, and renamed into place (the rename is atomic, so a file under its final name is always
whole). ``ingest`` moves every spooled file into the store in one transaction (INSERT OR IGNORE
on the row id makes a repeat harmless), then deletes the files. A file that DuckDB cannot read is
moved to ``quarantine/`` with the reason beside it, and the rest are ingested.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import duckdb

from ._connection import connect
from ._rows import encode_row
from ._schema import INGEST_COLUMNS, migrate

logger = logging.getLogger("finetuner_otel.store")

SUFFIX = ".jsonl"
_TMP_SUFFIX = ".tmp"
_STALE_TMP_SECONDS = 3600.0
_FILES_PER_TRANSACTION = 500
_counter = itertools.count()
_COLUMNS_SQL = "{" + ", ".join(f"'{k}': '{v}'" for k, v in INGEST_COLUMNS.items()) + "}"
_INSERT = (
    f"INSERT OR IGNORE INTO calls ({', '.join(INGEST_COLUMNS)}) "
    f"SELECT {', '.join(INGEST_COLUMNS)} FROM read_json(?, format='newline_delimited', "
    f"columns={_COLUMNS_SQL}, maximum_object_size=1073741824)"
)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def write_spool(spool_dir: Path, rows: Iterable[Mapping[str, Any]]) -> Path | None:
    """Write rows as one durable spool file; returns its path (None when there were no rows)."""
    data = "".join(encode_row(row) + "\n" for row in rows)
    if not data:
        return None
    ensure_dir(spool_dir)
    name = f"{time.time_ns():020d}-{os.getpid()}-{threading.get_ident()}-{next(_counter)}"
    final = spool_dir / (name + SUFFIX)
    tmp = spool_dir / (name + _TMP_SUFFIX)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(spool_dir)
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


def quarantined_files(spool_dir: Path) -> list[Path]:
    return pending_files(spool_dir / "quarantine")


def ingest(db_path: Path, spool_dir: Path, *, wait: float = 10.0) -> int:
    """Move every spooled file into the store. Returns the number of files ingested.

    Raises StoreLockedError when another process holds the store for longer than ``wait``.
    """
    if not pending_files(spool_dir):
        return 0
    done = 0
    with connect(db_path, read_only=False, wait=wait) as con:
        migrate(con, db_path)
        # Listed under the write lock: no other process can be ingesting these files now.
        files = pending_files(spool_dir)
        for start in range(0, len(files), _FILES_PER_TRANSACTION):
            batch = files[start : start + _FILES_PER_TRANSACTION]
            done += _ingest_batch(con, spool_dir, batch)
    _remove_stale_tmp(spool_dir)
    return done


def _ingest_batch(con: duckdb.DuckDBPyConnection, spool_dir: Path, files: list[Path]) -> int:
    try:
        _insert(con, files)
    except duckdb.Error:
        if len(files) == 1:
            _quarantine(spool_dir, files[0])
            return 0
        # One bad file must not hold back the others: retry them one at a time.
        return sum(_ingest_batch(con, spool_dir, [file]) for file in files)
    for file in files:
        file.unlink(missing_ok=True)
    return len(files)


def _insert(con: duckdb.DuckDBPyConnection, files: list[Path]) -> None:
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(_INSERT, [[str(f) for f in files]])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _quarantine(spool_dir: Path, file: Path) -> None:
    """Set an unreadable spool file aside, with the reason, so it neither blocks nor vanishes."""
    target_dir = spool_dir / "quarantine"
    ensure_dir(target_dir)
    try:
        with open(file, encoding="utf-8", errors="replace") as fh:
            reason = "unknown"
            for number, line in enumerate(fh, 1):
                try:
                    json.loads(line)
                except ValueError as exc:
                    reason = f"line {number} is not valid JSON: {exc}"
                    break
    except OSError as exc:
        reason = f"cannot read: {exc}"
    target = target_dir / file.name
    os.replace(file, target)
    target.with_suffix(".reason.txt").write_text(reason + "\n", encoding="utf-8")
    logger.error(
        "finetuner-otel: spool file %s could not be ingested (%s); moved to %s",
        file,
        reason,
        target,
    )


def _remove_stale_tmp(spool_dir: Path) -> None:
    """Temporary files left by a process that died mid-write hold nothing acknowledged."""
    cutoff = time.time() - _STALE_TMP_SECONDS
    try:
        entries = list(os.scandir(spool_dir))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name.endswith(_TMP_SUFFIX) and entry.stat().st_mtime < cutoff:
            Path(entry.path).unlink(missing_ok=True)
