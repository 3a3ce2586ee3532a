"""The spool: durable files of rows waiting to be ingested into the DuckDB store.

Exporters never open the DuckDB file: they write spool files (``_files``, which imports no
DuckDB), each whole under its final name. ``ingest`` moves spooled files into the store in
transactions (INSERT OR IGNORE on the row id makes a repeat harmless), then deletes the files.

Ingest never stops for the data: whatever error a file or a line causes, known or not, only that
line (or a file that cannot be read at all) is moved to ``quarantine/``, with the reasons in
``<name>.reason.txt`` beside it, and the rest goes in. Only the machine stops it (out of memory,
a full disk, a failed commit, an interrupt): every file then stays in the spool for a later
ingest, and the caller gets a StoreError, never a raw DuckDB error. Every file and directory
made here is its owner's alone (0600, 0700), the store's write-ahead log included.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from .._errors import StoreError
from ._connection import ingest_connection, keep_wal_private, limit_memory, raise_memory_limit
from ._files import REASON_SUFFIX, SUFFIX, pending_files, private_dir, write_private
from ._files import TMP_SUFFIX as _TMP_SUFFIX
from ._files import write_new as _write_new
from ._rows import STRICT_JSON
from ._schema import INGEST_COLUMNS, migrate

logger = logging.getLogger("finetuner_otel.store")

_STALE_TMP_SECONDS = 3600.0
_FILES_PER_TRANSACTION = 500
# Spool bytes per ingest transaction. Each commit writes the write-ahead log and, past DuckDB's
# checkpoint threshold (16 MB of it), a checkpoint, so small transactions pay those more often;
# too large ones spill under the ingest's memory limit (_connection). Measured on DuckDB 2.0,
# 20,000 spans of 3 KB in files of 80 (add()'s chunks) and of 512 (export()'s batches), one
# thread, 96 MB limit: 4 MB took 51 and 62 µs a row, 8 MB 43 and 48, 16 MB 38 and 43, 32 MB
# 50, 64 MB 56; the helper's peak RSS was within 150 MB at every size (146 at 16 MB).
_BYTES_PER_TRANSACTION = 16 * 1024 * 1024
_COLUMNS_SQL = "{" + ", ".join(f"'{k}': '{v}'" for k, v in INGEST_COLUMNS.items()) + "}"
# DuckDB's JSON reader holds a buffer of twice the largest object it may meet (1 GB: it asked
# for 2 GB), so the bound is set per transaction from its largest file (no line is longer than
# its file): at least DuckDB's default of 16 MiB (a smaller one does not shrink the buffer), at
# most 1 GiB (the longest line ingest takes).
_MIN_OBJECT_SIZE = 16 << 20
_MAX_OBJECT_SIZE = 1 << 30
_READ = f"read_json(?, format='newline_delimited', columns={_COLUMNS_SQL}, maximum_object_size=?)"
_INSERT = (
    f"INSERT OR IGNORE INTO recorded_calls ({', '.join(INGEST_COLUMNS)}) "
    f"SELECT {', '.join(INGEST_COLUMNS)} FROM {_READ}"
)
# The same rows, read a third as dearly (13 µs a 3 KB row here, against read_json's 40): each
# line parsed as one JSON object, then cast to the columns in one step. Strict: a value of the
# wrong type is an error, as in read_json; a missing key is one too, where read_json reads
# NULL. So only a transaction this one refuses is read again by read_json (_INSERT), whose
# verdict (and reasons) stand, line by line.
_INSERT_FAST = (
    f"INSERT OR IGNORE INTO recorded_calls ({', '.join(INGEST_COLUMNS)}) "
    f"SELECT unnest(json_transform_strict(json, '{_COLUMNS_SQL.replace(chr(39), chr(34))}')) "
    "FROM read_json_objects(?, format='newline_delimited', maximum_object_size=?)"
)


# Errors of the machine, not of the data: the spool is kept for a later ingest, never
# quarantined (an ingest that ran out of memory or disk would otherwise set good calls aside).
# DuckDB's IOException is not among them: it is also what a file DuckDB cannot open gives, so
# that file is tried alone first (and an IOException on a probe file of ours is the machine's).
_RESOURCE_ERRORS = (
    duckdb.OutOfMemoryException,
    duckdb.InterruptException,
    duckdb.FatalException,
    MemoryError,
)


class _MachineError(StoreError):
    """Ingest stopped by the machine, not the data: the spool is kept."""


def _machine_error(exc: BaseException, what: str = "ingest") -> _MachineError:
    first_line = (str(exc).splitlines() or [""])[0]
    return _MachineError(
        f"{what} stopped by the machine, not the data ({type(exc).__name__}: {first_line}); "
        f"the spool is kept and ingested later"
    )


def ingest(db_path: Path, spool_dir: Path, *, wait: float = 10.0) -> int:
    """Move every spooled file into the store. Returns the number of files ingested.

    Raises StoreLockedError when another process holds the store for longer than ``wait``, and
    StoreError when the machine stops it (the spool is then kept); never a DuckDB error.
    """
    if not pending_files(spool_dir):
        return 0
    try:
        with ingest_connection(db_path, wait) as con:
            migrate(con, db_path)
            # Listed under the write lock: no other process can be ingesting these files now.
            return ingest_pending(con, db_path, spool_dir)
    except StoreError:
        raise
    except (duckdb.Error, OSError, MemoryError) as exc:
        raise _machine_error(exc) from exc


def ingest_pending(
    con: duckdb.DuckDBPyConnection,
    db_path: Path | None,
    spool_dir: Path,
    publish: Callable[[], None] | None = None,
) -> int:
    """Every spooled file into ``recorded_calls`` on ``con``, in transactions of about
    _BYTES_PER_TRANSACTION; the number of files taken. The caller holds the spool (the store's
    write lock, or a lake's spool lock). See _ingest_batch for ``db_path`` and ``publish``."""
    done = 0
    try:
        for batch in _batches(pending_files(spool_dir)):
            done += _ingest_batch(con, db_path, spool_dir, batch, publish or _nothing)
    except StoreError:
        raise
    except (duckdb.Error, OSError, MemoryError) as exc:
        raise _machine_error(exc) from exc
    _remove_stale_tmp(spool_dir)
    return done


def _batches(files: list[Path]) -> list[list[Path]]:
    """The files in ingest order, grouped into transactions of about _BYTES_PER_TRANSACTION."""
    batches: list[list[Path]] = []
    current: list[Path] = []
    size = 0
    for file in files:
        length = _size(file)
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


def _size(file: Path) -> int:
    try:
        return file.stat().st_size
    except OSError:
        return 0


def _object_size(files: list[Path]) -> int:
    """The longest line the reader must take from ``files``: their largest, as a power of 2."""
    largest = max((_size(f) for f in files), default=0) + 1
    return min(max(_MIN_OBJECT_SIZE, 1 << (largest - 1).bit_length()), _MAX_OBJECT_SIZE)


def _nothing() -> None:
    pass


def _ingest_batch(
    con: duckdb.DuckDBPyConnection,
    db_path: Path | None,
    spool_dir: Path,
    files: list[Path],
    publish: Callable[[], None] = _nothing,
) -> int:
    """Ingest ``files`` into ``recorded_calls`` on ``con``. ``db_path`` None: ``con`` is a
    scratch database, not the store, and ``publish`` moves what each transaction took in to the
    store (a lake) before the files it came from are deleted."""
    try:
        _insert_within_memory(con, db_path, files)
    except _MachineError:
        raise
    except duckdb.OutOfMemoryException as exc:
        if len(files) == 1:
            raise _machine_error(exc) from exc
        half = len(files) // 2  # smaller transactions, within the ingest's memory limit
        return _ingest_batch(con, db_path, spool_dir, files[:half], publish) + _ingest_batch(
            con, db_path, spool_dir, files[half:], publish
        )
    except _RESOURCE_ERRORS as exc:
        raise _machine_error(exc) from exc
    except Exception:  # the data's fault, known or not: find what, and set only that aside
        if len(files) == 1:
            return _salvage(con, db_path, spool_dir, files[0], publish)
        # One bad file must not hold back the others: each half is tried on its own, so a bad
        # file among n costs about 2·log2(n) more transactions, not n.
        half = len(files) // 2
        return _ingest_batch(con, db_path, spool_dir, files[:half], publish) + _ingest_batch(
            con, db_path, spool_dir, files[half:], publish
        )
    publish()
    for file in files:
        file.unlink(missing_ok=True)
    return len(files)


def _insert_within_memory(
    con: duckdb.DuckDBPyConnection, db_path: Path | None, files: list[Path]
) -> None:
    """``_insert`` under the ingest's memory limit; for one file that does not fit, under twice
    the limit, and so on up to MAX_INGEST_MEMORY: DuckDB's memory for one file grows with its
    size (a file of 2,000 rows of 2 KB took 128 MB), and a file cannot be split in
    transactions. Out of memory beyond that is the machine's."""
    scale = 1
    while True:
        try:
            _insert(con, db_path, files, memory_scale=scale)
            return
        except duckdb.OutOfMemoryException:
            if len(files) > 1 or not raise_memory_limit(scale):
                raise
            scale *= 2


def _insert(
    con: duckdb.DuckDBPyConnection,
    db_path: Path | None,
    files: list[Path],
    *,
    fast: bool = True,
    memory_scale: int = 1,
) -> None:
    """Insert the rows of ``files`` in one transaction. A failed COMMIT is the machine's (the
    rows were already checked by the INSERT): a full disk under the write-ahead log, mostly.
    ``fast``: read by _INSERT_FAST first, by _INSERT if that refuses them."""
    try:
        if db_path is not None:
            keep_wal_private(db_path)  # a checkpoint at the last commit may have removed it
    except OSError as exc:
        raise _machine_error(exc) from exc
    names, object_size = [str(f) for f in files], _object_size(files)
    limit_memory(con, object_size, memory_scale)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(_INSERT_FAST if fast else _INSERT, [names, object_size])
    except _RESOURCE_ERRORS:
        _rollback(con)
        raise
    except duckdb.Error:
        _rollback(con)
        if not fast:
            raise
        _insert(con, db_path, files, fast=False, memory_scale=memory_scale)  # its verdict
        return
    except BaseException:
        _rollback(con)
        raise
    try:
        con.execute("COMMIT")
    except duckdb.Error as exc:
        _rollback(con)
        raise _machine_error(exc, "the commit of an ingest") from exc


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    # After a failed COMMIT, DuckDB has already ended the transaction, and a ROLLBACK raising
    # "no transaction is active" must not hide the error that matters.
    with contextlib.suppress(duckdb.Error):
        con.execute("ROLLBACK")


def _salvage(
    con: duckdb.DuckDBPyConnection,
    db_path: Path | None,
    spool_dir: Path,
    file: Path,
    publish: Callable[[], None] = _nothing,
) -> int:
    """Ingest the good lines of a file DuckDB refused and quarantine the rest, with reasons.

    Returns 1 if any line was ingested. A crash part-way is harmless: the file stays until the
    end, and ingesting its good lines again is a no-op.
    """
    try:
        data = file.read_bytes()
    except OSError as exc:
        _quarantine(spool_dir, file, [f"cannot read the file: {exc}"], None)
        return 0
    numbered = [(n, line) for n, line in enumerate(data.split(b"\n"), 1) if line.strip()]
    bad: list[tuple[int, bytes, str]] = []
    readable: list[tuple[int, bytes]] = []
    for number, line in numbered:
        problem = _not_a_row(line)
        if problem is None:
            readable.append((number, line))
        else:
            bad.append((number, line, problem))
    probe = file.with_name(f"{file.name}.probe{_TMP_SUFFIX}")
    try:
        bad += _insert_lines(con, db_path, probe, readable)
    finally:
        probe.unlink(missing_ok=True)
    bad.sort()
    good = len(numbered) - len(bad)
    publish()
    if bad:
        reasons = [f"line {number}: {reason}" for number, _, reason in bad]
        _quarantine(spool_dir, file, reasons, [line for _, line, _ in bad] if good else None)
    else:
        file.unlink(missing_ok=True)
    return 1 if good else 0


def _not_a_row(line: bytes) -> str | None:
    """Why a line cannot be a row before DuckDB is asked (not JSON, not an object), or None."""
    try:
        value = STRICT_JSON.decode(line.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        return f"Malformed JSON: {str(exc)[:200]}"
    if not isinstance(value, dict):
        return f"Malformed JSON: a row is a JSON object, not {type(value).__name__}"
    return None


def _insert_lines(
    con: duckdb.DuckDBPyConnection,
    db_path: Path | None,
    probe: Path,
    lines: list[tuple[int, bytes]],
) -> list[tuple[int, bytes, str]]:
    """Insert each line that DuckDB takes; the others with DuckDB's reason. Halves of a refused
    group are tried in turn, so k bad lines among n cost about 2k·log2(n) small transactions."""
    bad: list[tuple[int, bytes, str]] = []
    groups = [lines] if lines else []
    while groups:
        group = groups.pop()
        try:
            probe.unlink(missing_ok=True)
            # Not fsynced: a scratch copy, read back at once; the spool file stays until the end.
            _write_new(probe, b"".join(line + b"\n" for _, line in group), sync=False)
        except OSError as exc:
            raise _machine_error(exc) from exc
        try:
            _insert(con, db_path, [probe], fast=False)
        except _MachineError:
            raise
        except _RESOURCE_ERRORS as exc:
            raise _machine_error(exc) from exc
        except duckdb.IOException as exc:  # our own fresh probe file: the disk, not the data
            raise _machine_error(exc) from exc
        except Exception as exc:
            if len(group) == 1:
                number, line = group[0]
                bad.append((number, line, _without_probe_location(exc)))
            else:
                half = len(group) // 2
                groups += [group[half:], group[:half]]  # the first half is tried first
    return bad


def _without_probe_location(exc: BaseException) -> str:
    """The error's message on one line, less where the probe file and its line were (they mean
    nothing) and DuckDB's advice on reader options (ours are fixed)."""
    text = re.sub(r' in file "[^"]*",| in line \d+', "", str(exc))
    text = " ".join(
        part.strip()
        for part in text.splitlines()
        if part.strip() and not part.startswith("Try setting")
    )
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, duckdb.Error) else text


def _quarantine(
    spool_dir: Path, file: Path, reasons: list[str], bad_lines: list[bytes] | None
) -> None:
    """Set unreadable spool content aside, with the reasons, so it neither blocks nor vanishes.

    ``bad_lines`` None moves the whole file; otherwise only those lines are kept there. The
    reasons are written first and each file whole or not at all: a full disk leaves no copy
    without its reasons, and the spool file stays (a machine error) until both are written.
    """
    target_dir = spool_dir / "quarantine"
    target = target_dir / file.name
    try:
        private_dir(target_dir)
        reason_file = target_dir / (file.name.removesuffix(SUFFIX) + REASON_SUFFIX)
        write_private(reason_file, ("\n".join(reasons) + "\n").encode())
        if bad_lines is None:
            os.replace(file, target)
        else:
            write_private(target, b"".join(line + b"\n" for line in bad_lines))
            file.unlink(missing_ok=True)
    except OSError as exc:
        raise _machine_error(exc, "quarantining a spool file") from exc
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
