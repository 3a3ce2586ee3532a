"""Short DuckDB connections that cooperate across threads and processes.

DuckDB lets one process write a file, and a reader in another process blocks that writer; it has
no lock wait of its own. So every connection here is opened for one short task and closed at once
(the ingest helper's one DuckDB attaches the store for each ingest and detaches it after:
``keep_instance``).
Within a process, a lock per file serialises them (DuckDB also refuses a read-only and a
read-write connection to one file in one process); across processes, a refused lock is retried
until ``wait`` seconds have passed.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb

from .._errors import StoreError, StoreLockedError
from ._files import private_dir

# Never reach for the network: json, parquet and icu are built into the Python package.
_CONFIG = {"autoinstall_known_extensions": False}
# The sandbox of store.sql(): a read-only connection that reaches nothing but the store. DuckDB
# itself enforces it, whatever the statement (EXPLAIN ANALYZE COPY ... TO, IMPORT DATABASE,
# ATTACH, read_text('/etc/passwd'), INSTALL/LOAD, SET, PRAGMA, CALL ...): no file but the store
# and its WAL can be read or written, no other database attached, no extension installed or
# loaded, no persistent secret, and no setting changed (lock_configuration, last). Queries do
# not spill to a temp directory either: one beside the store would be a writable place (set
# at connect, as external access turned off freezes it).
_SANDBOX_CONFIG: dict[str, str | bool] = {
    **_CONFIG,
    "temp_directory": "",
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "allow_persistent_secrets": False,
}
# In this order: external access off freezes the temp directory (set above, at connect), and
# the lock freezes every other setting.
_SANDBOX = ("SET enable_external_access = false", "SET lock_configuration = true")
# Settings of later DuckDB versions than the oldest supported (1.1); where an older one lacks a
# setting, it lacks what the setting closes too.
_SANDBOX_IF_KNOWN = {"allow_extension_repositories": "'forbidden'"}
# The ingest runs beside the app: in the exporter's helper process (FINETUNER_INGEST=process),
# or in the app itself (its thread, a Store's reads), so DuckDB's memory there is bounded:
# DuckDB's defaults (80% of the machine's memory, a thread per core) took 475 MB in the app
# after 100,000 calls. One thread, no insertion order to keep, and a memory limit of the JSON
# reader's buffer (twice the longest line it may meet, limit_memory) plus 64 MiB to work in
# (a transaction is up to 16 MB of spool, _spool: 4,096 spans of 3 KB in 4 MB transactions ran
# out of 32 MiB); what does not fit spills to the owner-only <store>.tmp/ (_private_files).
INGEST_WORKING_MEMORY = 64 << 20
_BOUNDED_CONFIG: dict[str, str | int | bool] = {
    "threads": 1,
    "preserve_insertion_order": False,
    "memory_limit": f"{INGEST_WORKING_MEMORY + (32 << 20)}B",
}
_locks: dict[str, threading.RLock] = {}
_locks_guard = threading.Lock()
_T = TypeVar("_T")


def _lock_for(path: Path) -> threading.RLock:
    key = str(path)
    with _locks_guard:
        lock = _locks.get(key)
        if lock is None:
            lock = _locks[key] = threading.RLock()
        return lock


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


@contextmanager
def connect(
    path: Path,
    *,
    read_only: bool,
    wait: float = 10.0,
    sandbox: bool = False,
    bounded: bool = False,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to ``path`` for the duration of the ``with`` block; ``sandbox`` (read-only
    only) makes it one that can reach nothing but the store, for SQL from anyone; ``bounded``
    one with the ingest's memory limit and one thread (_BOUNDED_CONFIG)."""
    if sandbox and not read_only:
        raise ValueError("a sandboxed connection is read-only")
    if read_only and not path.exists():
        raise StoreError(
            f"no store at {path}: nothing has been captured there yet. Run your app with "
            f"finetuner_otel.instrument() (or check FINETUNER_DB / --db)."
        )
    lock = _lock_for(path)
    with lock:
        con = _retrying_lock(path, wait, lambda: _open(path, read_only, sandbox, bounded))
        if not sandbox:  # (the sandbox neither writes nor spills)
            _private_files(con, path, read_only)
        try:
            yield con
        finally:
            con.close()
            if not sandbox:
                _tidy_spill_dir(path)


def _retrying_lock(path: Path, wait: float, take: Callable[[], _T]) -> _T:
    """``take()`` (which opens or attaches ``path``), retried while another process holds the
    file, for up to ``wait`` seconds (DuckDB has no lock wait of its own)."""
    deadline = time.monotonic() + wait
    delay = 0.005
    while True:
        try:
            return take()
        except duckdb.IOException as exc:
            if not _is_lock_conflict(exc):
                raise StoreError(f"cannot open the store {path}: {exc}") from exc
            if time.monotonic() >= deadline:
                raise StoreLockedError(
                    f"the store {path} is held by another process (DuckDB allows one writer, "
                    f"and readers block it). Retry, or stop the process that holds it: {exc}"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


# The ingest helper's own DuckDB (keep_instance): one in-memory database, made once, with the
# store attached for each ingest and detached after it. Starting a DuckDB costs about 25 ms
# here whatever it opens (an in-memory one too) and closing it a few more; attaching and
# detaching a store, 3 ms: of an ingest of a few rows (about 40 ms with a connection of its
# own), that was half. The store's lock is held only while it is attached, as a connection's.
_instance: tuple[Path, duckdb.DuckDBPyConnection] | None = None
_keep_instance = False
_ATTACHED = "store"


def keep_instance() -> None:
    """From now on, ``ingest_connection`` attaches the store to one long-lived DuckDB of this
    process: for the ingest helper, a process of its own. (Not in the app: DuckDB stays loaded,
    though what it holds of the store is let go at each detach.)"""
    global _keep_instance
    _keep_instance = True


def ingest_connection(
    path: Path, wait: float
) -> contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]:
    """A read-write connection to the store at ``path`` with the ingest's bounded settings, for
    one ingest: a connection of its own (``connect(bounded=True)``), or once ``keep_instance``
    was called, the store attached to the process's long-lived DuckDB (``attached``)."""
    if _keep_instance:
        return attached(path, wait)
    return connect(path, read_only=False, wait=wait, bounded=True)


@contextmanager
def attached(path: Path, wait: float) -> Iterator[duckdb.DuckDBPyConnection]:
    """The store at ``path`` attached read-write to this process's long-lived DuckDB (made
    with the ingest's bounded settings on first use, and made afresh for another store or
    after an error it may not survive), and made the default database, for the duration of
    the ``with`` block; detached after it, which checkpoints it and frees its lock."""
    with _lock_for(path):
        con = _instance_for(path)
        literal = "'" + str(path).replace("'", "''") + "'"
        try:
            _retrying_lock(
                path,
                wait,
                lambda: _owner_only(path, lambda: con.execute(f"ATTACH {literal} AS {_ATTACHED}")),
            )
        except StoreLockedError:
            raise
        except BaseException:
            _drop_instance()  # whatever it was, the next ingest starts from a fresh DuckDB
            raise
        try:
            _private_files(None, path, read_only=False)
            con.execute(f"USE {_ATTACHED}")
            yield con
        except BaseException:
            _detach(con)
            _drop_instance()  # an ingest stopped by the machine: no state of it is kept
            raise
        else:
            _detach(con)
        finally:
            _tidy_spill_dir(path)


def _instance_for(path: Path) -> duckdb.DuckDBPyConnection:
    global _instance
    if _instance is not None and _instance[0] != path:
        _drop_instance()
    if _instance is None:
        config: dict[str, str | bool | int | float | list[str]] = {
            **_BOUNDED_CONFIG,
            **_CONFIG,
            "temp_directory": str(_spill_dir(path)),
        }
        _instance = (path, duckdb.connect(":memory:", config=config))
    return _instance[1]


def _detach(con: duckdb.DuckDBPyConnection) -> None:
    """Detach the store (a checkpoint first, as at a connection's close); an instance that
    cannot is closed, so the next ingest starts from a fresh one and the lock goes with it."""
    try:
        con.execute("USE memory")
        con.execute(f"DETACH {_ATTACHED}")
        # DuckDB keeps the blocks it freed, up to its memory limit, for the next query (about
        # 40 MB after an ingest of 20,000 rows): a lower limit lets them go, until the next.
        row = con.execute("SELECT current_setting('memory_limit')").fetchone()
        con.execute("SET memory_limit = '1MB'")
        if row is not None:
            con.execute(f"SET memory_limit = '{row[0]}'")
    except duckdb.Error:
        _drop_instance()


def _drop_instance() -> None:
    global _instance
    if _instance is not None:
        with contextlib.suppress(duckdb.Error):
            _instance[1].close()
        _instance = None


def _open(
    path: Path, read_only: bool, sandbox: bool = False, bounded: bool = False
) -> duckdb.DuckDBPyConnection:
    config: dict[str, str | bool | int | float | list[str]] = (
        {**_BOUNDED_CONFIG, **_CONFIG} if bounded else dict(_CONFIG)
    )
    if sandbox:
        con = duckdb.connect(str(path), read_only=True, config=dict(_SANDBOX_CONFIG))
        try:
            _seal(con)
        except BaseException:
            con.close()
            raise
        return con
    if read_only:
        return duckdb.connect(str(path), read_only=True, config=config)
    return _owner_only(path, lambda: duckdb.connect(str(path), read_only=False, config=config))


def _owner_only(path: Path, take: Callable[[], _T]) -> _T:
    """``take()``, which opens the store at ``path`` for writing (making it if need be); a store
    it makes, and any folder above it, is its owner's alone (captured prompts are private)."""
    if path.exists():
        return take()
    private_dir(path.parent)
    taken = take()
    os.chmod(path, 0o600)
    return taken


def _seal(con: duckdb.DuckDBPyConnection) -> None:
    """The sandbox's settings that must follow the connect: see _SANDBOX."""
    known = con.execute(
        "SELECT name FROM duckdb_settings() WHERE list_contains(?, name) ORDER BY name",
        [list(_SANDBOX_IF_KNOWN)],
    ).fetchall()
    for (name,) in known:
        con.execute(f"SET {name} = {_SANDBOX_IF_KNOWN[name]}")
    for setting in _SANDBOX:
        con.execute(setting)


# The most one ingest transaction may take: one spool file too large for less (a burst of long
# calls in one export batch) is still ingested, not kept in the spool for ever.
MAX_INGEST_MEMORY = 1 << 30


def limit_memory(con: duckdb.DuckDBPyConnection, object_size: int, scale: int = 1) -> None:
    """The ingest's memory limit for a transaction whose longest line may take
    ``object_size`` bytes (the JSON reader's buffer is twice that), times ``scale`` (at most
    MAX_INGEST_MEMORY). One set in _CONFIG stands."""
    if "memory_limit" in _CONFIG:
        return
    limit = min((2 * object_size + INGEST_WORKING_MEMORY) * scale, MAX_INGEST_MEMORY)
    con.execute(f"SET memory_limit = '{limit}B'")


def raise_memory_limit(scale: int) -> bool:
    """Whether a transaction that ran out of memory at ``scale`` may be tried at twice it."""
    return "memory_limit" not in _CONFIG and INGEST_WORKING_MEMORY * scale < MAX_INGEST_MEMORY


def keep_wal_private(path: Path) -> None:
    """Make the store's write-ahead log owner-only (0600) before DuckDB makes it.

    DuckDB creates ``<store>.wal`` at the first commit with the process umask (0644: anyone on
    the machine could read the newest rows) and deletes it at each checkpoint. An open
    connection writes into an existing log file as it is, keeping its mode; an empty one left
    by a crash is harmless (DuckDB discards it at the next open). Never truncates: a log with
    rows in it holds the only copy of the last commits. Called after opening a write connection
    (and by ingest before each commit, which may follow a checkpoint).
    """
    wal = path.with_name(path.name + ".wal")
    fd = os.open(wal, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _spill_dir(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")  # DuckDB's default temp_directory


def _private_files(con: duckdb.DuckDBPyConnection | None, path: Path, read_only: bool) -> None:
    """The log (for a write connection) and the directory DuckDB spills a large query's rows
    into (it makes ``<store>.tmp/`` 0755, its files 0644): made owner-only before DuckDB makes
    them, so what it writes there is its owner's alone. ``con`` is closed if they cannot be."""
    try:
        if not read_only:
            keep_wal_private(path)
        spill = _spill_dir(path)
        try:
            os.mkdir(spill, 0o700)
        except FileExistsError:
            if spill.is_dir() and not spill.is_symlink():
                with contextlib.suppress(OSError):  # left by a DuckDB that crashed
                    os.chmod(spill, 0o700)
    except OSError as exc:
        if read_only:
            return  # a reader in a directory it cannot write: DuckDB cannot spill there either
        if con is not None:
            con.close()
        raise StoreError(f"cannot write beside the store {path}: {exc}") from exc


def _tidy_spill_dir(path: Path) -> None:
    # DuckDB removes the spill directory it made, not one made for it; another connection's
    # files in it keep it (rmdir only removes an empty one).
    with contextlib.suppress(OSError):
        os.rmdir(_spill_dir(path))
