"""The store on Apache Iceberg: the same tables, as Iceberg tables in a SQL catalog on
PostgreSQL, their data Parquet files under a warehouse folder (or object storage).

Nothing here is a server or a format of ours: pyiceberg writes the tables, the catalog's
optimistic concurrency orders the commits of every writer (each commit names the snapshot it
read; the catalog refuses it if another came first, and it is rebased and tried again), and
DuckDB reads them through Arrow, so a dataset is still plain DuckDB SQL.

- **Reads** (``reading``): the schema's DuckDB file (tables, views.sql, macros), opened
  read-only, with each table of the lake mounted as a temporary view over a ``pyarrow.dataset``
  of its current data files. DuckDB pushes projections and filters (the dataset, a time range)
  down into the Parquet scan, whose row-group statistics skip what does not match; the files
  are partitioned by dataset and day.
- **Calls** (``append_calls``): idempotent by ``id``: before each commit the batch's ids are
  looked up among the rows of its datasets and time range (the manifests' bounds prune the
  files), so a batch committed twice (a receiver killed after its commit, before deleting its
  spool; the Collector retrying to another receiver) is stored once.
- **Everything else** (``transaction``): the library's record modules run their SQL on a
  scratch copy of the schema's file holding the small tables' rows; what changed is committed
  table by table as the rows added and the rows removed, rebased on any newer snapshot as the
  writes would run one after another on a DuckDB file (the last writer of a key wins). Iceberg
  commits one table at a time: children go before the tables that point at them (results
  before their run), so a crash between two commits leaves rows nothing refers to, never a run
  without its results.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import fcntl
import functools
import itertools
import logging
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from .._errors import ConfigurationError, StoreError, StoreLockedError
from .._settings import Lake
from ._connection import _BOUNDED_CONFIG, _CONFIG, _SANDBOX_CONFIG, _seal
from ._files import pending_files, private_dir
from ._schema import MIGRATIONS_TABLE, VIEWS_TABLE, migrate
from ._spool import _machine_error, ingest, ingest_pending

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.table import Table

logger = logging.getLogger("finetuner_otel.store")

CALLS = "recorded_calls"
# Commit order of a transaction: a table before those that refer to it.
_COMMIT_ORDER = (
    "feedback",
    "preferences",
    "snapshot_calls",
    "snapshots",
    "finetune_uploads",
    "finetune_job_history",
    "finetune_jobs",
    "eval_cache",
    "eval_results",
    "eval_runs",
)
_INTERNAL = frozenset({MIGRATIONS_TABLE, VIEWS_TABLE})
# A commit that lost the race is rebased and tried again, with jittered doubling waits, for up
# to this long (four receivers committing at once conflict often; each try takes one catalog
# round trip and the files of the batch).
_COMMIT_PATIENCE = 120.0
_INSTALL_HINT = "pip install 'finetuner-otel[iceberg]'"


def _pyiceberg() -> Any:
    try:
        import pyiceberg.catalog.sql as sql_catalog
    except ImportError as exc:
        raise ConfigurationError(
            f"an Iceberg store needs pyiceberg with its SQL catalog and PostgreSQL driver: "
            f"{_INSTALL_HINT} ({exc})"
        ) from exc
    return sql_catalog


_catalogs: dict[tuple[str, str], SqlCatalog] = {}
_catalogs_guard = threading.Lock()


def catalog(lake: Lake) -> SqlCatalog:
    """The SQL catalog of ``lake`` (one per process: it holds a connection pool)."""
    key = (lake.catalog_uri, lake.warehouse)
    with _catalogs_guard:
        found = _catalogs.get(key)
        if found is None:
            sql_catalog = _pyiceberg()
            try:
                found = sql_catalog.SqlCatalog(
                    "finetuner", uri=lake.catalog_uri, warehouse=lake.warehouse
                )
            except Exception as exc:
                raise StoreError(
                    f"cannot reach the Iceberg catalog of {lake.display}: {exc}"
                ) from exc
            _catalogs[key] = found
        return found


@functools.cache
def _template() -> tuple[dict[str, list[tuple[str, str]]], dict[str, list[str]], dict[str, Any]]:
    """The store's tables as this version makes them: each table's columns with their DuckDB
    types, its primary key, and its Arrow schema (what the Iceberg table is made from)."""
    con = duckdb.connect(":memory:", config=dict(_CONFIG))
    try:
        migrate(con, "the Iceberg template")
        names = [
            row[0]
            for row in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' ORDER BY 1"
            ).fetchall()
            if row[0] not in _INTERNAL
        ]
        columns = {
            name: [
                (str(c), str(t))
                for c, t in con.execute(
                    "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? "
                    "ORDER BY column_index",
                    [name],
                ).fetchall()
            ]
            for name in names
        }
        keys = {
            table: list(cols)
            for table, cols in con.execute(
                "SELECT table_name, constraint_column_names FROM duckdb_constraints() "
                "WHERE constraint_type = 'PRIMARY KEY'"
            ).fetchall()
        }
        schemas = {
            name: con.sql(f"SELECT * FROM {name} LIMIT 0").to_arrow_table().schema for name in names
        }
    finally:
        con.close()
    return columns, keys, schemas


_template_guard = threading.Lock()
_template_files: dict[int, Path] = {}
_scratch_names = itertools.count()


def _template_file() -> Path:
    """A DuckDB file of this version's schema, empty: tables, views and macros as migrate()
    makes them (views.sql alone takes 90 ms to apply, a read of the lake 1). One per process,
    in an owner-only temporary folder removed at exit."""
    with _template_guard:
        path = _template_files.get(os.getpid())
        if path is not None and path.exists():
            return path
        folder = Path(tempfile.mkdtemp(prefix="finetuner-lake-"))
        atexit.register(shutil.rmtree, folder, True)
        path = folder / "schema.duckdb"
        con = duckdb.connect(str(path), config=dict(_CONFIG))
        try:
            migrate(con, "the Iceberg store's schema")
            con.execute("CHECKPOINT")
        finally:
            con.close()
        _template_files[os.getpid()] = path
        return path


@contextlib.contextmanager
def _scratch(config: dict[str, Any]) -> Iterator[duckdb.DuckDBPyConnection]:
    """A writable copy of the schema's file, for one ingest or transaction; deleted after."""
    template = _template_file()
    path = template.with_name(f"scratch-{os.getpid()}-{next(_scratch_names)}.duckdb")
    shutil.copyfile(template, path)
    try:
        con = duckdb.connect(str(path), config={**config, "temp_directory": str(path) + ".tmp"})
        try:
            yield con
        finally:
            con.close()
    finally:
        for leftover in (path, path.with_name(path.name + ".wal")):
            leftover.unlink(missing_ok=True)
        shutil.rmtree(str(path) + ".tmp", ignore_errors=True)


def _with_utc(schema: pa.Schema) -> pa.Schema:
    import pyarrow as pa

    fields = []
    for field in schema:
        kind = field.type
        if pa.types.is_timestamp(kind) and kind.tz is not None:
            kind = pa.timestamp("us", tz="UTC")
        fields.append(pa.field(field.name, kind, nullable=True))
    return pa.schema(fields)


@functools.cache
def _arrow_schema(name: str) -> pa.Schema:
    """The Arrow schema of table ``name`` as its Iceberg table holds it."""
    return _with_utc(_template()[2][name])


def _conform(table: pa.Table, name: str) -> pa.Table:
    """Rows from DuckDB as the Iceberg table's Arrow schema takes them."""
    schema = _arrow_schema(name)
    return table.select(schema.names).cast(schema)


def ingest_into(target: Path | Lake, spool_dir: Path, *, wait: float = 10.0) -> int:
    """Move the spool into the store ``target``: a DuckDB file, or a lake."""
    if isinstance(target, Lake):
        return LakeStore(target).ingest(spool_dir, wait)
    return ingest(target, spool_dir, wait=wait)


def _retrying(what: str, lake: Lake) -> Iterator[int]:
    """Attempts 0, 1, ... with jittered doubling waits between them, for _COMMIT_PATIENCE."""
    deadline = time.monotonic() + _COMMIT_PATIENCE
    delay = 0.02
    attempt = 0
    while True:
        yield attempt
        attempt += 1
        if time.monotonic() > deadline:
            raise StoreError(
                f"{what} in {lake.display} lost the race to other writers for "
                f"{_COMMIT_PATIENCE:.0f} s; nothing was committed, try again"
            )
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 1.0)


class LakeStore:
    """The Iceberg tables of one ``Lake``, made on first write."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    # -- tables -----------------------------------------------------------------------------

    def _identifier(self, name: str) -> str:
        return f"{self.lake.namespace}.{name}"

    def exists(self) -> bool:
        """Whether the calls table has been made (nothing is made by asking)."""
        try:
            return bool(catalog(self.lake).table_exists(self._identifier(CALLS)))
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(
                f"cannot reach the Iceberg catalog of {self.lake.display}: {exc}"
            ) from exc

    def ensure(self) -> dict[str, Table]:
        """Every table at its newest snapshot, made (or given this version's new columns) where
        needed. Two processes making them at once: the catalog lets one win, and the other
        finds its tables on the next try."""
        if self.lake in _ensured:
            loaded = self._load()
            if all(table is not None for table in loaded.values()):
                return {name: table for name, table in loaded.items() if table is not None}
            _ensured.discard(self.lake)  # dropped meanwhile: made again
        for attempt in range(5):
            try:
                tables = self._make_tables()
                break
            except (StoreError, ConfigurationError):
                raise
            except Exception as exc:  # a race with another process making them: look again
                if attempt == 4:
                    raise StoreError(
                        f"cannot make the tables of {self.lake.display}: {exc}"
                    ) from exc
                time.sleep(0.05 * (attempt + 1) * (0.5 + random.random()))
        _ensured.add(self.lake)
        return tables

    def _make_tables(self) -> dict[str, Table]:
        from pyiceberg.exceptions import NamespaceAlreadyExistsError, TableAlreadyExistsError

        cat = catalog(self.lake)
        with contextlib.suppress(NamespaceAlreadyExistsError):
            if (self.lake.namespace,) not in cat.list_namespaces():
                cat.create_namespace(self.lake.namespace)
        tables = {}
        for name in _template()[0]:
            identifier = self._identifier(name)
            schema = _arrow_schema(name)
            if not cat.table_exists(identifier):
                with contextlib.suppress(TableAlreadyExistsError):
                    self._create(cat, identifier, name, schema)
            table = cat.load_table(identifier)
            if any(f.name not in table.schema().column_names for f in schema):
                with table.update_schema() as update:
                    update.union_by_name(schema)
                table = cat.load_table(identifier)
            unset = {k: v for k, v in _TABLE_PROPERTIES.items() if table.properties.get(k) != v}
            unset.pop("format-version", None)  # set when made; not a property to change
            if unset:  # made by an earlier version
                with table.transaction() as transaction:
                    transaction.set_properties(unset)
                table = cat.load_table(identifier)
            tables[name] = table
        return tables

    def _create(self, cat: SqlCatalog, identifier: str, name: str, schema: pa.Schema) -> None:
        """One commit: the table and, for calls, its partitions (dataset, day)."""
        from pyiceberg.transforms import DayTransform

        with cat.create_table_transaction(
            identifier, schema=schema, properties=_TABLE_PROPERTIES
        ) as transaction:
            if name == CALLS:  # datasets are read whole, time ranges by day
                with transaction.update_spec() as spec:
                    spec.add_identity("dataset")
                    spec.add_field("started_at", DayTransform(), "day")

    def _load(self) -> dict[str, Table | None]:
        """Every table at its newest snapshot; None for one not made yet (by a newer version's
        table that this lake's writers have not made: it reads as empty, and nothing is made)."""
        from pyiceberg.exceptions import NoSuchTableError

        cat = catalog(self.lake)
        tables: dict[str, Table | None] = {}
        try:
            for name in _template()[0]:
                try:
                    tables[name] = cat.load_table(self._identifier(name))
                except NoSuchTableError:
                    tables[name] = None
        except Exception as exc:
            raise StoreError(f"cannot read the tables of {self.lake.display}: {exc}") from exc
        return tables

    # -- reads ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A sandboxed, read-only connection to the schema's file whose tables are the lake's,
        as of now, and whose views are views.sql's: it can read nothing else, write nothing,
        change no setting."""
        tables = self._load()
        con = duckdb.connect(str(_template_file()), read_only=True, config=dict(_SANDBOX_CONFIG))
        try:
            for name, table in tables.items():
                _mount_table(con, name, table)
            _seal(con)
            yield con
        finally:
            con.close()

    # -- calls ------------------------------------------------------------------------------

    def append_calls(self, rows: pa.Table) -> int:
        """Commit ``rows`` of recorded_calls, less those whose id is already stored; returns how
        many were added. Safe to repeat: a batch that was committed adds nothing the second time."""
        import pyarrow.compute as pc
        from pyiceberg.exceptions import CommitFailedException

        if rows.num_rows == 0:
            return 0
        rows = _conform(rows, CALLS)
        for _ in _retrying("committing calls", self.lake):
            table = catalog(self.lake).load_table(self._identifier(CALLS))
            stored = _stored_ids(table, rows)
            new = (
                rows.filter(pc.invert(pc.is_in(rows["id"], value_set=stored)))
                if len(stored)
                else rows
            )
            if new.num_rows == 0:
                return 0
            try:
                table.append(new)
            except CommitFailedException:
                continue
            return int(new.num_rows)
        raise AssertionError("unreachable")  # pragma: no cover

    def ingest(self, spool_dir: Path, wait: float) -> int:
        """Move the spool into the lake: the same reading, checks and quarantine as for a
        DuckDB file, into a scratch copy of the schema's file, each transaction then committed
        to the lake before its files are deleted. One ingest of a spool folder at a time (a
        lock file)."""
        if not pending_files(spool_dir):
            return 0
        if self.lake not in _ensured:
            self.ensure()
        with _spool_lock(spool_dir, wait), _scratch({**_BOUNDED_CONFIG, **_CONFIG}) as con:

            def publish() -> None:
                rows = con.sql(f"SELECT * FROM {CALLS}").to_arrow_table()
                con.execute(f"DELETE FROM {CALLS}")
                try:
                    self.append_calls(rows)
                except StoreError:
                    raise
                except Exception as exc:
                    raise _machine_error(exc, "a commit to the lake") from exc

            return ingest_pending(con, None, spool_dir, publish)

    # -- everything else --------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write connection for the record modules: the small tables copied into a scratch
        file (with their keys), recorded_calls readable; what the block changed is committed
        at its end."""
        tables = self.ensure()
        with _scratch(dict(_CONFIG)) as con:
            for name in _COMMIT_ORDER:
                con.register("_lake_rows", _read_all(tables[name], name))
                con.execute(f"INSERT INTO {name} SELECT * FROM _lake_rows")
                con.unregister("_lake_rows")
                con.execute(f"CREATE TEMP TABLE _before_{name} AS SELECT * FROM {name}")
            _mount_table(con, CALLS, tables[CALLS])  # a temporary view over the main table
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
            for name in _COMMIT_ORDER:
                self._commit_changes(con, name, tables[name])

    def _commit_changes(self, con: duckdb.DuckDBPyConnection, name: str, table: Table) -> None:
        from pyiceberg.exceptions import CommitFailedException

        added = con.sql(
            f"SELECT * FROM {name} EXCEPT ALL SELECT * FROM _before_{name}"
        ).to_arrow_table()
        removed = con.sql(
            f"SELECT * FROM _before_{name} EXCEPT ALL SELECT * FROM {name}"
        ).to_arrow_table()
        if added.num_rows == 0 and removed.num_rows == 0:
            return
        key = _template()[1].get(name, [])
        for attempt in _retrying(f"committing {name}", self.lake):
            if attempt:  # lost the race: rebase on what won it
                table = catalog(self.lake).load_table(self._identifier(name))
            merged = _rebase(name, key, _read_all(table, name), added, removed)
            try:
                if merged is None:
                    table.append(_conform(added, name))
                else:
                    table.overwrite(_conform(merged, name))
            except CommitFailedException:
                continue
            return

    # -- operations -------------------------------------------------------------------------

    def compact(
        self, *, min_files: int = 8, orphans_older_than: dt.timedelta = dt.timedelta(days=1)
    ) -> dict[str, int]:
        """Rewrite each partition of recorded_calls that has ``min_files`` data files or more
        as one file (a receiver commits a small file per ingest); then expire every table's
        snapshots older than an hour, and delete the data files no snapshot refers to that are
        older than ``orphans_older_than``. Returns the partitions rewritten, the files before
        and after, and the orphans removed."""
        from pyiceberg.exceptions import CommitFailedException
        from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThan

        table = self.ensure()[CALLS]
        groups: dict[tuple[str, int], int] = {}
        for task in table.scan().plan_files():
            partition = task.file.partition
            groups[(partition[0], partition[1])] = groups.get((partition[0], partition[1]), 0) + 1
        before = sum(groups.values())
        rewritten = 0
        epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
        for (dataset, day), count in sorted(groups.items()):
            if count < min_files:
                continue
            start = epoch + dt.timedelta(days=day)
            where = And(
                EqualTo("dataset", dataset),
                And(
                    GreaterThanOrEqual("started_at", start.isoformat()),
                    LessThan("started_at", (start + dt.timedelta(days=1)).isoformat()),
                ),
            )
            for _ in _retrying(f"compacting {dataset} {start.date()}", self.lake):
                table = catalog(self.lake).load_table(self._identifier(CALLS))
                rows = table.scan(row_filter=where).to_arrow()
                try:
                    table.overwrite(rows, overwrite_filter=where)
                except CommitFailedException:
                    continue
                rewritten += 1
                break
        table = catalog(self.lake).load_table(self._identifier(CALLS))
        after = len(list(table.scan().plan_files()))
        orphans = 0
        for name in _template()[0]:
            table = catalog(self.lake).load_table(self._identifier(name))
            self._expire(table)
            orphans += remove_orphans(
                catalog(self.lake).load_table(self._identifier(name)), orphans_older_than
            )
        return {
            "partitions_rewritten": rewritten,
            "files_before": before,
            "files_after": after,
            "orphans_removed": orphans,
        }

    def _expire(self, table: Table) -> None:
        cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
        with contextlib.suppress(Exception):  # lost a race with another writer: next time
            table.maintenance.expire_snapshots().older_than(cutoff).commit()


def remove_orphans(table: Table, older_than: dt.timedelta) -> int:
    """Delete the table's data files that no snapshot refers to and that are older than
    ``older_than``: those of a commit that lost its race (pyiceberg writes the files first), or
    of a writer killed before its commit, and those that compaction replaced once their
    snapshots expired. Younger ones may be a commit still under way. Returns how many."""
    import pyarrow.fs as pafs

    filesystem, root = pafs.FileSystem.from_uri(table.location())
    referenced = {
        pafs.FileSystem.from_uri(path)[1]
        for path in table.inspect.all_files()["file_path"].to_pylist()
    }
    cutoff = dt.datetime.now(dt.timezone.utc) - older_than
    found = filesystem.get_file_info(
        pafs.FileSelector(f"{root}/data", recursive=True, allow_not_found=True)
    )
    removed = 0
    for info in found:
        if info.type != pafs.FileType.File or info.path in referenced:
            continue
        mtime = info.mtime
        if mtime is not None and mtime.replace(tzinfo=mtime.tzinfo or dt.timezone.utc) > cutoff:
            continue
        filesystem.delete_file(info.path)
        removed += 1
    return removed


_TABLE_PROPERTIES = {
    "write.parquet.compression-codec": "zstd",
    "format-version": "2",
    # Each commit writes a new metadata file listing the earlier ones; keep 20, delete older
    # ones (a receiver commits every second: the log would grow without end).
    "write.metadata.previous-versions-max": "20",
    "write.metadata.delete-after-commit.enabled": "true",
    # pyiceberg 0.12 and later retry a commit that lost its race by replaying it on the newer
    # snapshot, unseen: an append would then add rows another writer had just stored (our
    # retry looks their ids up first), and an overwrite would keep both. We retry ourselves.
    "commit.retry.num-retries": "0",
}
# The lakes whose tables this process has made or checked (a LakeStore is made per ingest).
_ensured: set[Lake] = set()


def _stored_ids(table: Table, rows: pa.Table) -> Any:
    """The ids among ``rows`` the table already holds, read from the files of their datasets
    and time range only."""
    import pyarrow.compute as pc
    from pyiceberg.expressions import And, GreaterThanOrEqual, In, LessThanOrEqual

    if table.current_snapshot() is None:
        return rows["id"].slice(0, 0)
    low, high = pc.min_max(rows["started_at"]).values()
    where = And(
        In("dataset", set(pc.unique(rows["dataset"]).to_pylist())),
        And(
            GreaterThanOrEqual("started_at", low.as_py().isoformat()),
            LessThanOrEqual("started_at", high.as_py().isoformat()),
        ),
    )
    ids = table.scan(row_filter=where, selected_fields=("id",)).to_arrow()["id"]
    return pc.filter(ids, pc.is_in(ids, value_set=rows["id"]))


def _read_all(table: Table, name: str) -> pa.Table:
    """Every row of the table, its columns in this version's order and types."""
    return _conform(table.scan().to_arrow(), name)


def _rebase(
    name: str, key: list[str], current: pa.Table, added: pa.Table, removed: pa.Table
) -> pa.Table | None:
    """The table's rows once this transaction's change is applied to ``current`` (what other
    writers committed meanwhile), or None when appending ``added`` to it is that change.

    A keyed table is rebased as its upserts run on a DuckDB file one after another: the last
    writer of a key wins (a job's status, an eval run rewritten, a cache entry), and a row this
    change deleted is gone whoever deleted it first. A table without a key (feedback, a job's
    history) only ever grows, and loses exactly the rows this change removed."""
    con = duckdb.connect(":memory:", config=dict(_CONFIG))
    try:
        con.register("cur", current)
        con.register("add", _conform(added, name))
        con.register("del", _conform(removed, name))
        if key:
            cols = ", ".join(f'"{c}"' for c in key)
            ((taken,),) = con.execute(
                f"SELECT count(*) FROM cur WHERE ({cols}) IN (SELECT ({cols}) FROM add)"
            ).fetchall()
            if not taken and removed.num_rows == 0:
                return None
            return con.sql(
                f"SELECT * FROM cur WHERE ({cols}) NOT IN (SELECT ({cols}) FROM add "
                f"UNION ALL SELECT ({cols}) FROM del) UNION ALL SELECT * FROM add"
            ).to_arrow_table()
        if removed.num_rows == 0:
            return None
        return con.sql(
            "(SELECT * FROM cur EXCEPT ALL SELECT * FROM del) UNION ALL SELECT * FROM add"
        ).to_arrow_table()
    finally:
        con.close()


def _mount_table(con: duckdb.DuckDBPyConnection, name: str, table: Table | None) -> None:
    """``name`` as a temporary view over the table's current data files (a pyarrow dataset, so
    DuckDB pushes projections and filters into the Parquet scan), typed as a DuckDB store types
    it. Temporary objects come first in DuckDB's search path, so the schema file's views read
    it, not the empty table of the same name."""
    source = f"_lake_{name}"
    con.register(source, _arrow_source(table, name))
    found = {
        str(c): str(t) for c, t, *_ in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    }
    select = ", ".join(
        f'"{c}"' if found.get(c) == t else f'CAST("{c}" AS {t}) AS "{c}"'
        for c, t in _template()[0][name]
    )
    con.execute(f"CREATE TEMP VIEW {name} AS SELECT {select} FROM {source}")


def _arrow_source(table: Table | None, name: str) -> Any:
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    schema = _arrow_schema(name)
    if table is None or table.current_snapshot() is None:
        return schema.empty_table()
    tasks = list(table.scan().plan_files())
    if any(task.delete_files for task in tasks):  # written by another engine: let pyiceberg merge
        return table.scan().to_arrow()
    if not tasks:
        return schema.empty_table()
    filesystem, _ = pafs.FileSystem.from_uri(tasks[0].file.file_path)
    paths = [pafs.FileSystem.from_uri(task.file.file_path)[1] for task in tasks]
    return ds.dataset(paths, schema=schema, format="parquet", filesystem=filesystem)


@contextlib.contextmanager
def _spool_lock(spool_dir: Path, wait: float) -> Iterator[None]:
    """One ingest of a spool folder at a time, across processes (flock: freed if one dies)."""
    private_dir(spool_dir)
    fd = os.open(spool_dir / ".ingest.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreLockedError(
                        f"another process is ingesting the spool {spool_dir}; it will be taken "
                        f"in by that one, or retry"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)
