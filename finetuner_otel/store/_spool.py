"""The spool: durable files of rows waiting to be ingested into the DuckDB store.

Exporters never open the DuckDB file. Each ``write`` is one file, written to a temporary name,
fsynced, and renamed into place (the rename is atomic, so a file under its final name is always
whole). ``ingest`` moves every spooled file into the store in one transaction (INSERT OR IGNORE
on the row id makes a repeat harmless), then deletes the files. A file that DuckDB cannot read is
moved to ``quarantine/`` with the reason beside it, and the rest are ingested.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import threading
import time
from pathlib import Path

import duckdb

from .._errors import StoreError
from ._connection import connect
from ._schema import INGEST_COLUMNS, migrate

logger = logging.getLogger("finetuner_otel.store")

SUFFIX = ".jsonl"
_TMP_SUFFIX = ".tmp"
_STALE_TMP_SECONDS = 3600.0
_FILES_PER_TRANSACTION = 500
# Spool bytes per ingest transaction. DuckDB's memory for one bulk load grows with it: a backlog
# of 20,000 spans of 2 KB took 210 MB in one transaction, about 80 MB in 4 MB ones. Smaller
# transactions cost some throughput (4 MB: about 20% here; 16 MB: under 10%), so the cap only
# bites on a backlog (a held store, a burst), not on the ingest thread's usual 4,096 spans.
_BYTES_PER_TRANSACTION = 16 * 1024 * 1024
_counter = itertools.count()
_COLUMNS_SQL = "{" + ", ".join(f"'{k}': '{v}'" for k, v in INGEST_COLUMNS.items()) + "}"
_READ = (
    f"read_json(?, format='newline_delimited', columns={_COLUMNS_SQL}, "
    "maximum_object_size=1073741824)"
)
_INSERT = (
    f"INSERT OR IGNORE INTO recorded_calls ({', '.join(INGEST_COLUMNS)}) "
    f"SELECT {', '.join(INGEST_COLUMNS)} FROM {_READ}"
)
_PROBE = f"SELECT * FROM {_READ}"  # every column, so every conversion is tried


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


def _utf8(lines: list[str]) -> bytes:
    data = "".join(line + "\n" for line in lines)
    try:
        return data.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (from text that was never valid Unicode) cannot be stored as UTF-8;
        # each becomes U+FFFD rather than costing the whole batch.
        return data.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")


def write_spool(spool_dir: Path, lines: list[str]) -> Path | None:
    """Write spool lines (see ``span_to_line``) as one durable spool file; returns its path
    (None when there were no lines)."""
    if not lines:
        return None
    data = _utf8(lines)
    ensure_dir(spool_dir)
    name = f"{time.time_ns():020d}-{os.getpid()}-{threading.get_ident()}-{next(_counter)}"
    final = spool_dir / (name + SUFFIX)
    tmp = spool_dir / (name + _TMP_SUFFIX)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
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
        for batch in _batches(pending_files(spool_dir)):
            done += _ingest_batch(con, spool_dir, batch)
    _remove_stale_tmp(spool_dir)
    return done


# Errors of the machine, not of the data: the spool is kept for a later ingest, never
# quarantined (an ingest that ran out of memory or disk would otherwise set good calls aside).
_RESOURCE_ERRORS = (
    duckdb.OutOfMemoryException,
    duckdb.IOException,
    duckdb.InterruptException,
    duckdb.FatalException,
    duckdb.PermissionException,
)


def _resource_error(exc: duckdb.Error) -> StoreError:
    return StoreError(
        f"ingest stopped by the machine, not the data ({type(exc).__name__}: "
        f"{str(exc).splitlines()[0]}); the spool is kept and ingested later"
    )


def _batches(files: list[Path]) -> list[list[Path]]:
    """The files in ingest order, grouped into transactions of about _BYTES_PER_TRANSACTION."""
    batches: list[list[Path]] = []
    current: list[Path] = []
    size = 0
    for file in files:
        try:
            length = file.stat().st_size
        except OSError:
            length = 0
        if current and (
            size + length > _BYTES_PER_TRANSACTION or len(current) >= _FILES_PER_TRANSACTION
        ):
            batches.append(current)
            current, size = [], 0
        current.append(file)
        size += length
    if current:
        batches.append(current)
    return batches


def _ingest_batch(con: duckdb.DuckDBPyConnection, spool_dir: Path, files: list[Path]) -> int:
    try:
        _insert(con, files)
    except _RESOURCE_ERRORS as exc:
        raise _resource_error(exc) from exc
    except duckdb.Error as exc:
        if len(files) == 1:
            return _salvage(con, spool_dir, files[0], exc)
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


def _salvage(
    con: duckdb.DuckDBPyConnection, spool_dir: Path, file: Path, error: duckdb.Error
) -> int:
    """Ingest the good lines of a file DuckDB refused and quarantine the rest, with reasons.

    Returns 1 if any line was ingested. A crash part-way is harmless: the file stays until the
    end, and ingesting its good lines again is a no-op.
    """
    try:
        lines = [line for line in file.read_bytes().split(b"\n") if line.strip()]
    except OSError as exc:
        _quarantine(spool_dir, file, [f"cannot read: {exc}"], None)
        return 0
    probe = file.with_name(file.name + ".probe" + _TMP_SUFFIX)
    good: list[bytes] = []
    bad: list[bytes] = []
    reasons: list[str] = []
    try:
        for number, line in enumerate(lines, 1):
            probe.write_bytes(line + b"\n")
            try:
                con.execute(_PROBE, [str(probe)]).fetchall()
            except _RESOURCE_ERRORS as exc:
                raise _resource_error(exc) from exc
            except duckdb.Error as exc:
                bad.append(line)
                reasons.append(f"line {number}: {_without_probe_location(exc)}")
            else:
                good.append(line)
        if good and bad:
            probe.write_bytes(b"".join(line + b"\n" for line in good))
            _insert(con, [probe])
    finally:
        probe.unlink(missing_ok=True)
    if not bad:  # every line reads on its own: the file as a whole was the problem
        reasons = [str(error)]
        bad = lines
    _quarantine(spool_dir, file, reasons, bad if good else None)
    return 1 if good else 0


def _without_probe_location(exc: duckdb.Error) -> str:
    """DuckDB's message, less where the probe file and its line were (they mean nothing here)."""
    return re.sub(r' in file "[^"]*",| in line \d+', "", str(exc))


def _quarantine(
    spool_dir: Path, file: Path, reasons: list[str], bad_lines: list[bytes] | None
) -> None:
    """Set unreadable spool content aside, with the reasons, so it neither blocks nor vanishes.

    ``bad_lines`` None moves the whole file; otherwise only those lines are kept there.
    """
    target_dir = spool_dir / "quarantine"
    ensure_dir(target_dir)
    target = target_dir / file.name
    if bad_lines is None:
        os.replace(file, target)
    else:
        target.write_bytes(b"".join(line + b"\n" for line in bad_lines))
        file.unlink(missing_ok=True)
    target.with_suffix(".reason.txt").write_text("\n".join(reasons) + "\n", encoding="utf-8")
    logger.error(
        "finetuner-otel: %s of spool file %s could not be ingested (%s); moved to %s",
        "the whole" if bad_lines is None else f"{len(bad_lines)} line(s)",
        file,
        reasons[0],
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
