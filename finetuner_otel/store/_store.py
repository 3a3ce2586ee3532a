"""``Store``: the DuckDB file of captured calls, read with short read-only connections."""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import duckdb

from .._errors import (
    CallNotFoundError,
    ConfigurationError,
    DatasetNotFoundError,
    StoreError,
    StoreLockedError,
)
from .._json import dumps
from .._prompt import Prompt
from .._settings import Lake, Settings, check_dataset_name
from ._call import CALL_QUERY, Call, load_call
from ._connection import connect
from ._dataset import (
    EXAMPLE_COLUMNS,
    Dataset,
    Example,
    Export,
    file_sha256,
    load_examples,
    publish,
    write_lines,
)
from ._files import pending_files, write_spool
from ._import import IMPORT_SCOPE, example_lines, file_trace_id, import_lines
from ._lake import LakeStore, ingest_into
from ._schema import SchemaStatus, is_current, migrate, schema_status
from ._validate import read_jsonl, validate_records

logger = logging.getLogger("finetuner_otel.store")


class DatasetSummary(NamedTuple):
    """One dataset in the store: ``examples`` are the calls usable for training."""

    name: str
    examples: int
    calls: int
    errors: int


# Review status, as a predicate over the examples view (e).
_STATUS = {
    "accepted": "e.verdict = 'accept'",
    "corrected": "e.corrected",
    "unreviewed": "e.verdict IS NULL AND NOT e.corrected",
}


# Statement kinds store.sql() runs: they read.
_READ_STATEMENTS = frozenset({"SELECT", "EXPLAIN", "PRAGMA"})


class Snapshot(NamedTuple):
    """One recorded export: ``id`` is the file's SHA-256."""

    id: str
    dataset: str
    format: str
    examples: int
    path: str | None
    created_at: datetime


class ImportResult(NamedTuple):
    """What ``import_jsonl`` did: ``added`` is 0 when this file was imported there before."""

    dataset: str
    sha256: str
    examples: int
    added: int


class SQLResult(Sequence[tuple[Any, ...]]):
    """Rows of a query, with their column names. Iterates (and indexes) as tuples."""

    def __init__(self, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        self.columns = columns
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Any) -> Any:
        return self.rows[index]

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.rows)

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SQLResult):
            return self.columns == other.columns and self.rows == other.rows
        if isinstance(other, list):
            return self.rows == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        head = ", ".join(self.columns)
        shown = "\n".join(f"  {row!r}" for row in self.rows[:10])
        more = f"\n  ... {len(self.rows) - 10} more" if len(self.rows) > 10 else ""
        return f"SQLResult({head}; {len(self.rows)} rows)\n{shown}{more}"


class Store:
    """A finetuner store: a DuckDB file (the default), or Iceberg tables in a PostgreSQL catalog
    (``Store("iceberg+postgresql://user@host/db?warehouse=/srv/lake")``), which several
    processes on several machines write at once. Reads first move any spooled calls in, when
    the store is free.

    ``read_only=True`` writes nothing at all, ever: reads neither ingest the spool nor upgrade
    an older store's schema (they say so instead), and every write method refuses.

    >>> store = Store("finetuner.duckdb")          # doctest: +SKIP
    >>> store.list_datasets()                      # doctest: +SKIP
    [DatasetSummary(name='search_classifier', examples=42, calls=45, errors=3)]
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | Lake | None = None,
        *,
        spool_dir: str | os.PathLike[str] | None = None,
        wait: float = 10.0,
        read_only: bool = False,
    ) -> None:
        self._settings = Settings.load(path, spool_dir=spool_dir)
        self._wait = wait
        self._read_only = bool(read_only)
        lake = self._settings.lake
        self._lake = LakeStore(lake) if lake is not None else None

    @property
    def path(self) -> Path:
        """The DuckDB file (an Iceberg store has none: see ``location``)."""
        if self._lake is not None:
            raise StoreError(
                f"the store {self.location} is on Iceberg and has no file; use store.location"
            )
        return self._settings.db_path

    @property
    def location(self) -> str:
        """Where the store is, as ``Store()`` takes it (a password masked)."""
        return self._settings.location

    @property
    def settings(self) -> Settings:
        return self._settings

    def exists(self) -> bool:
        """Whether the store has been made (the DuckDB file, or the lake's tables)."""
        if self._lake is not None:
            return self._lake.exists()
        return self._settings.db_path.exists()

    @property
    def spool_dir(self) -> Path:
        return self._settings.spool_dir

    @property
    def read_only(self) -> bool:
        return self._read_only

    def __repr__(self) -> str:
        flag = ", read_only=True" if self._read_only else ""
        return f"Store({self.location!r}{flag})"

    def _refuse_writes(self, what: str) -> None:
        if self._read_only:
            raise StoreError(
                f"this Store of {self.location} is read-only, so it cannot {what}; open "
                f"Store({self.location!r}) without read_only=True to write"
            )

    def ingest(self, wait: float | None = None) -> int:
        """Move spooled calls into the store now; returns the number of spool files ingested."""
        self._refuse_writes("ingest the spool")
        return ingest_into(
            self._settings.store, self.spool_dir, wait=self._wait if wait is None else wait
        )

    def compact(
        self, *, min_files: int = 8, orphans_older_than: timedelta = timedelta(days=1)
    ) -> dict[str, int]:
        """An Iceberg store's upkeep: rewrite each partition (dataset, day) of ``min_files``
        data files or more as one, expire snapshots older than an hour, and delete data files
        no snapshot refers to once they are ``orphans_older_than`` old (a commit that lost its
        race, a writer killed before its commit). A DuckDB file needs none."""
        self._refuse_writes("compact")
        if self._lake is None:
            raise StoreError(
                f"compact() is for an Iceberg store; the DuckDB file {self.location} needs none"
            )
        self._refresh()
        return self._lake.compact(min_files=min_files, orphans_older_than=orphans_older_than)

    def pending(self) -> int:
        """Spool files not yet ingested."""
        return len(pending_files(self.spool_dir))

    def schema_status(self) -> SchemaStatus:
        """Where the store's schema stands (applied and known migrations, the views' hash),
        read as it is: nothing is ingested or migrated. A store not made yet has applied none."""
        if not self.exists():
            return schema_status(None)
        if self._lake is not None:
            with self._lake.reading() as con:
                return schema_status(con)
        with connect(self.path, read_only=True, wait=self._wait, sandbox=True) as con:
            return schema_status(con)

    def _refresh(self) -> None:
        # Best effort: a store busy in another process is read as it is, and so is one that
        # cannot take the spool in now (a full disk, no memory): the spool waits, reads go on.
        if not self._read_only and pending_files(self.spool_dir):
            try:
                ingest_into(self._settings.store, self.spool_dir, wait=0.5)
            except StoreLockedError:
                pass
            except StoreError as exc:
                logger.warning(
                    "finetuner-otel: reading %s without its spool: %s", self.location, exc
                )

    def _nothing_stored(self) -> bool:
        """No store made, and no spool that a read would move in."""
        return not self.exists() and (self._read_only or not pending_files(self.spool_dir))

    def _upgrade(self) -> None:
        """Apply the schema migrations a store made by an earlier version lacks."""
        if self._read_only:
            raise StoreError(
                f"the store {self.path} was made by an earlier finetuner-otel and needs a schema "
                f"upgrade, which this read-only Store does not make; open it once without "
                f"read_only (e.g. finetuner ingest --db {self.path}) to upgrade it"
            )
        try:
            with connect(self.path, read_only=False, wait=self._wait) as con:
                migrate(con, self.path)
        except StoreLockedError as exc:
            raise StoreError(
                f"the store {self.path} needs a schema upgrade, and another process holds it "
                f"for writing ({exc}); try again when it is free"
            ) from exc

    def _query(self, sql: str, params: Sequence[Any] | None = None) -> SQLResult:
        """Run one read on a sandboxed connection (see ``sql``), after bringing in the spool
        and, for a store made by an earlier version, its schema."""
        self._refresh()
        if self._lake is not None:
            if not self._lake.exists():
                raise StoreError(
                    f"no store at {self.location}: nothing has been captured there yet. Run "
                    f"your app with finetuner_otel.instrument() (or check FINETUNER_DB / --db)."
                )
            with self._lake.reading() as con:
                return _run(con, sql, params)
        for attempt in range(2):
            with connect(self.path, read_only=True, wait=self._wait, sandbox=True) as con:
                if attempt or is_current(con, self.path):
                    return _run(con, sql, params)
            self._upgrade()
        raise AssertionError("unreachable")  # pragma: no cover

    def sql(self, query: str, params: Sequence[Any] | None = None) -> SQLResult:
        """Run one read-only DuckDB statement over the store (views ``calls``, ``examples``,
        ``datasets``, ...). Use ``?`` placeholders with ``params`` for values.

        The statement runs on a connection DuckDB itself confines to the store: it can read
        no other file, write nothing, attach no database, load no extension and change no
        setting, whatever the statement is, so it is safe to run SQL you did not write."""
        if not isinstance(query, str) or not query.strip():
            raise StoreError("store.sql() needs a SQL statement, e.g. 'SELECT * FROM datasets'")
        try:
            statements = duckdb.extract_statements(query)
        except duckdb.Error as exc:
            raise StoreError(f"SQL error: {exc}") from exc
        if len(statements) != 1:
            raise StoreError(
                f"store.sql() runs one statement, and this is {len(statements)}; "
                f"send them one at a time"
            )
        writes = sorted({s.type.name for s in statements} - _READ_STATEMENTS)
        if writes:
            raise StoreError(
                f"store.sql() is read-only, and this is a {' / '.join(writes)} statement. "
                f"Record feedback with accept/reject/correct (finetuner calls ...), and export "
                f"with the Dataset API (finetuner datasets export)."
            )
        return self._query(query, params)

    def list_datasets(self) -> list[DatasetSummary]:
        """Every dataset with its counts of trainable examples, calls and failed calls."""
        if self._nothing_stored():
            return []
        result = self._query("SELECT name, examples, calls, errors FROM datasets ORDER BY name")
        return [DatasetSummary(*row) for row in result]

    def get_call(self, call_id: str) -> Call:
        """The stored call with id ``call_id`` (``calls.id``), with its latest review;
        CallNotFoundError if there is none."""
        if not isinstance(call_id, str) or not call_id:
            raise ConfigurationError(f"a call id is the text in calls.id, got {call_id!r}")
        found = None
        if not self._nothing_stored():
            found = self._query(CALL_QUERY, [call_id]).rows
        if not found:
            raise CallNotFoundError(
                f"no call with id {call_id!r} in {self.location}; ids are in calls.id, e.g. "
                f"store.sql(\"SELECT id FROM calls WHERE dataset = 'x'\") or finetuner calls list"
            )
        return load_call(found[0])

    def _dataset_names(self) -> list[str]:
        if self._nothing_stored():
            return []
        result = self._query("SELECT DISTINCT dataset FROM recorded_calls ORDER BY 1")
        return [row[0] for row in result]

    def get_dataset(
        self,
        name: str,
        *,
        where: str | None = None,
        params: Sequence[Any] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        model: str | None = None,
        prompt: str | Prompt | None = None,
        prompt_version: str | None = None,
        status: str | None = None,
    ) -> Dataset:
        """The trainable examples of dataset ``name``; DatasetNotFoundError if it has no calls.

        Narrow it with ``model`` (the requested model), a time range (``since`` inclusive,
        ``until`` exclusive, on the call's start), the ``prompt`` the input was rendered from
        (a name, or a ``Prompt``: that version) or a ``prompt_version``, the review ``status``
        (``"accepted"``, ``"corrected"`` or ``"unreviewed"``), and ``where``: a SQL predicate
        over the ``calls`` view, with ``?`` placeholders filled from ``params``, e.g.
        ``where="input_tokens < ?", params=[1000]``.
        """
        self._require_dataset(name)
        condition, values = _selection(
            name, since, until, model, prompt, prompt_version, where, params
        )
        if status is not None and status not in _STATUS:
            raise ConfigurationError(
                f"status is one of {', '.join(map(repr, _STATUS))}, got {status!r}"
            )
        reviewed = _STATUS[status] if status is not None else "true"

        def load() -> list[Example]:
            return self._examples(condition, values, reviewed)

        return Dataset(name, load, self)

    def _require_dataset(self, name: str) -> None:
        names = self._dataset_names()
        if name not in names:
            close = difflib.get_close_matches(str(name), names, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            known = ", ".join(map(repr, names)) or "none yet"
            raise DatasetNotFoundError(
                f"no dataset named {name!r} in {self.location} (datasets: {known}).{hint}"
            )

    # --- snapshots and imports ------------------------------------------------------------------

    def snapshots(self, dataset: str | None = None) -> list[Snapshot]:
        """Every recorded export (of ``dataset`` and its parts, such as ``name[train]``, if
        given), oldest first."""
        if not self.exists():
            return []
        result = self._query(
            "SELECT id, dataset, format, examples, path, created_at FROM snapshots "
            "WHERE ? IS NULL OR dataset = ? OR starts_with(dataset, ? || '[') "
            "ORDER BY created_at, id",
            [dataset, dataset, dataset],
        )
        return [Snapshot(*row) for row in result]

    def get_snapshot(self, snapshot_id: str) -> Dataset:
        """The examples that went into an export, in its order, by the file's SHA-256 (or a
        unique prefix of 8 or more of its characters), as they are in the store now."""
        matches = [s for s in self.snapshots() if s.id.startswith(str(snapshot_id))]
        if len(str(snapshot_id)) < 8 or len(matches) != 1:
            known = ", ".join(s.id[:12] for s in self.snapshots()[-5:]) or "none yet"
            problem = "is ambiguous" if len(matches) > 1 else "names no snapshot"
            raise ConfigurationError(
                f"snapshot id {snapshot_id!r} {problem} in {self.location}; give 8 or more "
                f"characters of an id from store.snapshots() (latest: {known})"
            )
        snapshot = matches[0]

        def load() -> list[Example]:
            result = self._query(
                f"SELECT {EXAMPLE_COLUMNS} FROM snapshot_calls s "
                "JOIN examples e ON e.id = s.call_id JOIN calls c ON c.id = s.call_id "
                "WHERE s.snapshot_id = ? ORDER BY s.position",
                [snapshot.id],
            )
            return load_examples(result.rows)

        return Dataset(snapshot.dataset, load, self)

    def _record_snapshot(
        self, sha256: str, dataset: str, kind: str, path: Path, call_ids: list[str]
    ) -> str:
        with self.transaction() as con:
            con.execute(
                "INSERT OR IGNORE INTO snapshots (id, dataset, format, examples, path) "
                "VALUES (?, ?, ?, ?, ?)",
                [sha256, dataset, kind, len(call_ids), str(path.resolve())],
            )
            con.execute(
                "INSERT OR IGNORE INTO snapshot_calls "
                "SELECT ?, generate_subscripts(ids, 1) - 1, unnest(ids) "
                "FROM (SELECT CAST(? AS VARCHAR[]) AS ids)",
                [sha256, call_ids],
            )
        return sha256

    def import_jsonl(
        self, path: str | os.PathLike[str], dataset: str, *, model: str | None = None
    ) -> ImportResult:
        """Add the examples of an OpenAI chat fine-tuning JSONL file to dataset ``dataset``.

        The file is checked first (``validate_jsonl``): if any example has an error, nothing
        is added and the error says what to fix. Each example's last message (an assistant
        message) is its training target; ``model`` is recorded as the requested model.
        Importing the same file into the same dataset again adds nothing.
        """
        self._refuse_writes("import examples")
        check_dataset_name(dataset, source="dataset")
        source = Path(path)
        records = read_jsonl(source)
        report = validate_records(records, encoding=None)
        last_roles = [
            r["messages"][-1].get("role") if isinstance(r, Mapping) else None
            for r in records
            if isinstance(r, Mapping) and isinstance(r.get("messages"), list) and r["messages"]
        ]
        if not report.ok or any(role != "assistant" for role in last_roles):
            problem = (
                report.summary(limit=5)
                if not report.ok
                else "the last message of every example must be the assistant's answer"
            )
            raise ConfigurationError(
                f"{source} cannot be imported; nothing was added. Fix the file and import it "
                f"again:\n{problem}"
            )
        sha256 = file_sha256(source)
        if self.exists():
            before = self._query(
                "SELECT count(*) FROM recorded_calls WHERE dataset = ? AND trace_id = ? "
                "AND scope_name = ?",
                [dataset, format(file_trace_id(sha256), "032x"), IMPORT_SCOPE],
            )[0][0]
            if before:
                return ImportResult(dataset, sha256, len(records), 0)
        lines = import_lines(records, dataset=dataset, source=source, sha256=sha256, model=model)
        write_spool(self.spool_dir, lines)
        self.ingest()
        return ImportResult(dataset, sha256, len(records), len(records))

    def add_examples(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        dataset: str,
        scope: str = IMPORT_SCOPE,
        model: str | None = None,
        attributes: Sequence[Mapping[str, Any]] | None = None,
        finish_reasons: Sequence[str | None] | None = None,
    ) -> Dataset:
        """Store OpenAI chat fine-tuning records (``{"messages": [...], "tools": [...]}``,
        the last message the assistant's answer) as calls of ``dataset``; returns the training
        examples among them as a dataset, in order.

        ``scope`` names what made them (the calls' ``scope_name``), ``model`` is recorded as
        the requested model, and ``attributes`` (one mapping per record) are stored with each
        call, e.g. ``{"finetuner.source": "synthetic"}`` (``calls.source``). ``finish_reasons``
        (one per record, OpenAI's words, default ``stop``): an answer cut off at ``length`` or
        by ``content_filter`` is stored but is not a training example, as a captured one.
        """
        self._refuse_writes("add examples")
        check_dataset_name(dataset, source="dataset")
        _check_records(records, attributes)
        if finish_reasons is not None and len(finish_reasons) != len(records):
            raise ConfigurationError(
                f"finish_reasons has {len(finish_reasons)} entries for {len(records)} records; "
                f"give one per record"
            )
        trace_id = int(secrets.token_hex(16), 16) or 1
        lines = example_lines(
            records,
            dataset=dataset,
            trace_id=trace_id,
            scope=scope,
            model=model,
            attributes=attributes,
            finish_reasons=finish_reasons,
        )
        write_spool(self.spool_dir, lines)
        self.ingest()
        return self.get_dataset(dataset, where="trace_id = ?", params=[format(trace_id, "032x")])

    def _examples(self, condition: str, values: list[Any], reviewed: str) -> list[Example]:
        result = self._query(
            f"SELECT {EXAMPLE_COLUMNS} FROM examples e JOIN calls c ON c.id = e.id "
            f"WHERE e.id IN (SELECT id FROM calls WHERE {condition}) AND {reviewed} "
            "ORDER BY e.started_at, e.id",
            values,
        )
        return load_examples(result.rows)

    # --- feedback ---------------------------------------------------------------------------

    def accept(self, call_id: str, note: str | None = None) -> None:
        """Mark a call as a good example (undoes an earlier ``reject``)."""
        self._feedback(call_id, "accept", None, note)

    def reject(self, call_id: str, note: str | None = None) -> None:
        """Keep a call out of every dataset export (it stays in ``calls``)."""
        self._feedback(call_id, "reject", None, note)

    def correct(
        self, call_id: str, completion: str | Mapping[str, Any], note: str | None = None
    ) -> None:
        """Train on ``completion`` instead of what the model answered: the text of the
        assistant's answer, or a whole assistant message (with ``tool_calls``, say)."""
        message = _assistant_message(completion, "correct()")
        self._feedback(call_id, "correct", dumps(message), note)

    def prefer(
        self,
        call_id: str,
        preferred: str | Mapping[str, Any],
        non_preferred: str | Mapping[str, Any] | None = None,
        note: str | None = None,
    ) -> None:
        """Record a preference pair for the call's input: ``preferred`` over ``non_preferred``
        (by default, over what the model answered). Exported with ``export_preferences``."""
        better = dumps(_assistant_message(preferred, "prefer()"))
        worse = (
            dumps(_assistant_message(non_preferred, "prefer()"))
            if non_preferred is not None
            else None
        )
        with self._writing(call_id, note) as con:
            if worse is None:
                row = con.execute(
                    "SELECT openai_completion(output_messages) FROM recorded_calls WHERE id = ?",
                    [call_id],
                ).fetchone()
                if row is None or row[0] is None:
                    raise ConfigurationError(
                        f"call {call_id!r} has no recorded answer to be the non-preferred "
                        f"one; pass non_preferred="
                    )
                worse = row[0]
            con.execute(
                "INSERT INTO preferences (call_id, preferred, non_preferred, note) "
                "VALUES (?, ?, ?, ?)",
                [call_id, better, worse, note],
            )

    def export_preferences(self, dataset: str, path: str | os.PathLike[str]) -> Export:
        """Write the dataset's preference pairs in OpenAI's preference fine-tuning (DPO)
        format, one a line, oldest first; the file appears whole or not at all, recorded as a
        snapshot."""
        result = self._query(
            "SELECT call_id, example FROM preference_pairs WHERE dataset = ? ORDER BY created_at",
            [dataset],
        )
        target = Path(path)
        return publish(
            target,
            lambda tmp: write_lines(tmp, (json.loads(row[1]) for row in result.rows)),
            lambda sha256: self._record_snapshot(
                sha256, dataset, "openai_dpo", target, [row[0] for row in result.rows]
            ),
            len(result),
        )

    def _feedback(self, call_id: str, kind: str, completion: str | None, note: str | None) -> None:
        with self._writing(call_id, note) as con:
            con.execute(
                "INSERT INTO feedback (call_id, kind, completion, note) VALUES (?, ?, ?, ?)",
                [call_id, kind, completion, note],
            )

    @contextlib.contextmanager
    def _writing(self, call_id: str, note: str | None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write connection, after checking that ``call_id`` names a stored call; what the
        block writes is one transaction."""
        if not isinstance(call_id, str) or not call_id:
            raise ConfigurationError(f"a call id is the text in calls.id, got {call_id!r}")
        if note is not None and not isinstance(note, str):
            raise ConfigurationError(f"note must be text, got {note!r}")
        with self.transaction() as con:
            found = con.execute("SELECT 1 FROM recorded_calls WHERE id = ?", [call_id]).fetchone()
            if found is None:
                raise CallNotFoundError(
                    f"no call with id {call_id!r} in {self.location}; ids are in calls.id, e.g. "
                    f"store.sql(\"SELECT id FROM calls WHERE dataset = 'x'\")"
                )
            yield con

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write connection to the (migrated) store, for the library's own record modules
        (fine-tuning jobs, eval runs); what the block writes is one transaction, rolled back
        if the block raises."""
        self._refuse_writes("write")
        self._refresh()
        if self._lake is not None:
            with self._lake.transaction() as con:
                yield con
            return
        with connect(self.path, read_only=False, wait=self._wait) as con:
            migrate(con, self.path)
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise


def _selection(
    name: str,
    since: datetime | None,
    until: datetime | None,
    model: str | None,
    prompt: str | Prompt | None,
    prompt_version: str | None,
    where: str | None,
    params: Sequence[Any] | None,
) -> tuple[str, list[Any]]:
    """get_dataset's narrowing as a predicate over the calls view, with its values."""
    clauses = ["dataset = ?"]
    values: list[Any] = [name]
    for value, clause, label in (
        (since, "started_at >= ?", "since"),
        (until, "started_at < ?", "until"),
    ):
        if value is not None:
            if not isinstance(value, datetime):
                raise ConfigurationError(
                    f"{label} must be a datetime, got {value!r}; e.g. "
                    f"datetime(2026, 11, 1, tzinfo=timezone.utc)"
                )
            clauses.append(clause)
            values.append(value)
    if model is not None:
        clauses.append("request_model = ?")
        values.append(model)
    if isinstance(prompt, Prompt):
        if prompt_version is not None and prompt_version != prompt.version:
            raise ConfigurationError(
                f"prompt {prompt!r} is version {prompt.version}, not {prompt_version!r}; "
                f"pass the prompt's name to choose another version"
            )
        prompt_version = prompt.version
        prompt = prompt.name
    for text, clause, label in (
        (prompt, "prompt_name = ?", "prompt"),
        (prompt_version, "prompt_version = ?", "prompt_version"),
    ):
        if text is not None:
            if not isinstance(text, str):
                raise ConfigurationError(f"{label} must be text or a Prompt, got {text!r}")
            clauses.append(clause)
            values.append(text)
    if where is not None:
        if not isinstance(where, str) or not where.strip() or ";" in where:
            raise ConfigurationError(
                f"where must be one SQL predicate over the calls view, got {where!r}; "
                f'e.g. where="input_tokens < ?", params=[1000]'
            )
        clauses.append(f"({where})")
        values.extend(params or ())
    elif params:
        raise ConfigurationError("params were given without a where predicate to fill")
    return " AND ".join(clauses), values


# What DuckDB says when the sandbox (or read-only mode) refuses a statement.
_REFUSALS = ("disabled by configuration", "configuration has been locked", "read-only", "read only")


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None) -> SQLResult:
    try:
        cursor = con.execute(sql, list(params) if params is not None else None)
        columns = [d[0] for d in cursor.description or ()]
        return SQLResult(columns, cursor.fetchall())
    except duckdb.Error as exc:
        text = str(exc)
        if isinstance(exc, duckdb.PermissionException) or any(r in text for r in _REFUSALS):
            first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
            raise StoreError(
                f"store.sql() is read-only and reaches nothing but the store; DuckDB refused "
                f"this statement: {first}"
            ) from exc
        raise StoreError(f"SQL error: {exc}") from exc


def _check_records(
    records: Sequence[Mapping[str, Any]], attributes: Sequence[Mapping[str, Any]] | None
) -> None:
    """Each record has messages ending with the assistant's answer (its training target)."""
    if isinstance(records, str | bytes) or not isinstance(records, Sequence) or not records:
        raise ConfigurationError(
            f"add_examples() takes a list of records such as {{'messages': [{{'role': 'user', "
            f"'content': 'hi'}}, {{'role': 'assistant', 'content': 'hello'}}]}}, got {records!r}"
        )
    for index, record in enumerate(records):
        messages = record.get("messages") if isinstance(record, Mapping) else None
        if (
            not isinstance(messages, list)
            or not messages
            or not all(isinstance(m, Mapping) for m in messages)
            or messages[-1].get("role") != "assistant"
        ):
            raise ConfigurationError(
                f"record {index} needs 'messages': a list of chat messages whose last is the "
                f"assistant's answer, got {record!r}"
            )
    if attributes is not None and len(attributes) != len(records):
        raise ConfigurationError(
            f"attributes has {len(attributes)} entries for {len(records)} records; give one "
            f"mapping per record (or none)"
        )


def _assistant_message(value: Any, method: str) -> dict[str, Any]:
    """An answer given as text, or as a whole assistant message (with tool_calls, say)."""
    if isinstance(value, str):
        return {"role": "assistant", "content": value}
    if (
        isinstance(value, Mapping)
        and value.get("role") == "assistant"
        and ("content" in value or "tool_calls" in value)
    ):
        return dict(value)
    raise ConfigurationError(
        f"{method} takes the answer's text or an assistant message such as "
        f"{{'role': 'assistant', 'content': '...'}}, got {value!r}"
    )
