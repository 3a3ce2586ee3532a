"""The one place that knows the store's schema: tables, views and the ingest columns.

Tables come from ordered, named migrations (``MIGRATIONS``), frozen once released: each store
records the ones it ran. A store that records a migration this version does not know was written
by a newer finetuner-otel, and one whose migrations are out of order was edited by hand; both
are refused rather than guessed at, and left untouched.

Views and macros are current code, in ``views.sql``: the whole file is applied with
``CREATE OR REPLACE`` whenever its SHA-256 differs from the one the store records (table
``finetuner_views``), so every store, however old, reads through today's views.

``migrate()`` runs every pending migration, then the views if they changed, in ONE transaction
together with the rows that record them: all of it applies, or none, and a store is always at
exactly one known version.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from typing import NamedTuple

import duckdb

from .._cot import PATTERN as COT_PATTERN
from .._errors import SchemaError

MIGRATIONS_TABLE = "finetuner_migrations"
VIEWS_TABLE = "finetuner_views"
# Where views.sql takes the chain-of-thought pattern (one text for Python and SQL).
_COT_MARKER = "@COT_PATTERN@"

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_calls",
        """
        -- One row per GenAI span, as recorded. Read it through the calls view.
        CREATE TABLE recorded_calls (
            -- trace_id || span_id || start time in ns (hex): re-ingesting a spool file is a no-op
            id VARCHAR PRIMARY KEY,
            trace_id VARCHAR NOT NULL,
            span_id VARCHAR NOT NULL,
            parent_span_id VARCHAR,
            dataset VARCHAR NOT NULL,
            operation VARCHAR,               -- gen_ai.operation.name: chat, ...
            provider VARCHAR,                -- gen_ai.provider.name: openai, azure.ai.openai, ...
            request_model VARCHAR,
            response_model VARCHAR,
            response_id VARCHAR,
            started_at TIMESTAMPTZ NOT NULL,
            ended_at TIMESTAMPTZ NOT NULL,
            duration_ms DOUBLE NOT NULL,
            -- ok | error | incomplete (a stream that ended before its last event)
            status VARCHAR NOT NULL,
            error_type VARCHAR,
            error_message VARCHAR,
            finish_reasons VARCHAR[],
            input_tokens BIGINT,
            output_tokens BIGINT,
            request_options JSON,            -- temperature, response_format, tool_choice, ...
            -- the call as the GenAI semantic conventions record it (parts format)
            input_messages JSON,
            output_messages JSON,
            system_instructions JSON,
            tool_definitions JSON,
            -- false for errors, incomplete streams, eval calls, cut-off or empty completions
            trainable BOOLEAN NOT NULL,
            untrainable_reason VARCHAR,
            service_name VARCHAR,
            scope_name VARCHAR,              -- the instrumentation that made the span
            attributes JSON,                 -- every other span attribute
            ingested_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
        """,
    ),
    (
        "0002_feedback",
        """
        -- What people said about calls: accept, reject, or correct (with the completion to
        -- train on instead). The latest verdict and the latest correction of a call count.
        CREATE TABLE feedback (
            call_id VARCHAR NOT NULL,        -- calls.id
            kind VARCHAR NOT NULL CHECK (kind IN ('accept', 'reject', 'correct')),
            completion JSON,                 -- correct: the assistant message to train on
            note VARCHAR,
            created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
        """,
    ),
    (
        "0003_preferences",
        """
        -- Preference pairs for DPO: for a call's input, the preferred and the non-preferred
        -- assistant message.
        CREATE TABLE preferences (
            call_id VARCHAR NOT NULL,        -- calls.id: the input both answers reply to
            preferred JSON NOT NULL,
            non_preferred JSON NOT NULL,
            note VARCHAR,
            created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
        """,
    ),
    (
        "0004_snapshots",
        """
        -- Every export, content-addressed: the file's SHA-256, and which calls went in, in order.
        CREATE TABLE snapshots (
            id VARCHAR PRIMARY KEY,          -- SHA-256 of the exported file
            dataset VARCHAR NOT NULL,
            format VARCHAR NOT NULL,         -- openai_chat | openai_dpo | parquet | csv
            examples BIGINT NOT NULL,
            path VARCHAR,                    -- where it was written (first time)
            created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE snapshot_calls (
            snapshot_id VARCHAR NOT NULL,    -- snapshots.id
            position BIGINT NOT NULL,        -- the example's line (or row), from 0
            call_id VARCHAR NOT NULL,        -- calls.id
            PRIMARY KEY (snapshot_id, position)
        );
        """,
    ),
    (
        "0005_prompts",
        """
        -- The calls view gained the prompt a call was rendered from (views.sql): no table.
        """,
    ),
    (
        "0006_finetune",
        """
        -- Training files uploaded to a fine-tuning provider, and the export (snapshot) in each.
        CREATE TABLE finetune_uploads (
            provider VARCHAR NOT NULL,       -- openai, together, local, or a server's host
            file_id VARCHAR NOT NULL,        -- the provider's id of the file
            dataset VARCHAR,
            snapshot_id VARCHAR,             -- snapshots.id: the file's SHA-256
            format VARCHAR,                  -- openai_chat | openai_dpo
            examples BIGINT,
            uploaded_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (provider, file_id)
        );
        -- Every fine-tuning job started or followed, as last seen.
        CREATE TABLE finetune_jobs (
            provider VARCHAR NOT NULL,
            job_id VARCHAR NOT NULL,
            base_model VARCHAR,
            method VARCHAR,                  -- supervised | dpo
            training_file VARCHAR,           -- finetune_uploads.file_id
            validation_file VARCHAR,
            hyperparameters JSON,
            suffix VARCHAR,
            -- queued | running | succeeded | failed | cancelled; provider_status is the
            -- provider's own word (validating_files, compressing, ...)
            status VARCHAR,
            provider_status VARCHAR,
            fine_tuned_model VARCHAR,
            error VARCHAR,
            trained_tokens BIGINT,
            created_at TIMESTAMPTZ,
            finished_at TIMESTAMPTZ,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (provider, job_id)
        );
        -- Each status a job was seen in, when first seen.
        CREATE TABLE finetune_job_history (
            provider VARCHAR NOT NULL,
            job_id VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            provider_status VARCHAR NOT NULL,
            observed_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
        """,
    ),
    (
        "0007_evals",
        """
        -- Every eval run, and each example's row in it. Scores are in [0, 1]; accuracy is their
        -- mean over the scored examples (errors are counted apart).
        CREATE TABLE eval_runs (
            id VARCHAR PRIMARY KEY,
            eval VARCHAR NOT NULL,           -- the Eval's name (its class, by default)
            model VARCHAR NOT NULL,
            dataset VARCHAR,
            params JSON,                     -- temperature, ...
            examples BIGINT NOT NULL,
            scored BIGINT NOT NULL,
            errors BIGINT NOT NULL,          -- calls or comparisons that failed
            accuracy DOUBLE,
            ci_low DOUBLE,                   -- Wilson 95% interval of the accuracy
            ci_high DOUBLE,
            calls BIGINT,                    -- model calls made (retries included)
            retries BIGINT,
            cached BIGINT,                   -- answers taken from eval_cache
            started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE eval_results (
            run_id VARCHAR NOT NULL,         -- eval_runs.id
            position BIGINT NOT NULL,
            call_id VARCHAR,                 -- calls.id of the example
            messages JSON,                   -- the input the model was given
            target JSON,
            prediction JSON,
            score DOUBLE,                    -- null when status is error
            reason VARCHAR,
            status VARCHAR NOT NULL,         -- ok | error
            error VARCHAR,
            cached BOOLEAN,
            latency_ms DOUBLE,
            PRIMARY KEY (run_id, position)
        );
        -- Answers by model, messages and parameters, so a run calls only what changed.
        CREATE TABLE eval_cache (
            key VARCHAR PRIMARY KEY,         -- SHA-256 of [model, messages, parameters]
            model VARCHAR NOT NULL,
            answer JSON NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
        """,
    ),
    (
        "0008_sources_and_rationale",
        """
        -- The calls view gained source, rationale and answer (views.sql): no table.
        """,
    ),
]

SCHEMA_VERSION = len(MIGRATIONS)

# Columns of recorded_calls written by ingest, in the shape read_json needs (each spool line
# holds exactly these keys).
INGEST_COLUMNS: dict[str, str] = {
    "id": "VARCHAR",
    "trace_id": "VARCHAR",
    "span_id": "VARCHAR",
    "parent_span_id": "VARCHAR",
    "dataset": "VARCHAR",
    "operation": "VARCHAR",
    "provider": "VARCHAR",
    "request_model": "VARCHAR",
    "response_model": "VARCHAR",
    "response_id": "VARCHAR",
    "started_at": "TIMESTAMPTZ",
    "ended_at": "TIMESTAMPTZ",
    "duration_ms": "DOUBLE",
    "status": "VARCHAR",
    "error_type": "VARCHAR",
    "error_message": "VARCHAR",
    "finish_reasons": "VARCHAR[]",
    "input_tokens": "BIGINT",
    "output_tokens": "BIGINT",
    "request_options": "JSON",
    "input_messages": "JSON",
    "output_messages": "JSON",
    "system_instructions": "JSON",
    "tool_definitions": "JSON",
    "trainable": "BOOLEAN",
    "untrainable_reason": "VARCHAR",
    "service_name": "VARCHAR",
    "scope_name": "VARCHAR",
    "attributes": "JSON",
}


class SchemaStatus(NamedTuple):
    """Where a store's schema stands (``store.schema_status()``): the migrations it ran and
    those this version knows, and the SHA-256 of its views beside this version's."""

    applied: tuple[str, ...]
    known: tuple[str, ...]
    views_sha256: str | None  # None: views never applied by this mechanism (or no store)
    current_views_sha256: str

    @property
    def unknown(self) -> tuple[str, ...]:
        """Migrations a newer finetuner-otel ran: this version refuses the store."""
        return tuple(name for name in self.applied if name not in self.known)

    @property
    def pending(self) -> tuple[str, ...]:
        """Migrations the next write will run."""
        return tuple(name for name in self.known if name not in self.applied)

    @property
    def up_to_date(self) -> bool:
        """Nothing to migrate and the views are this version's: reads change nothing."""
        return (
            not self.pending
            and not self.unknown
            and (self.views_sha256 == self.current_views_sha256)
        )


@functools.cache
def views_sql() -> str:
    """views.sql as applied: the package's file with the chain-of-thought pattern put in."""
    text = resources.files(__package__).joinpath("views.sql").read_text(encoding="utf-8")
    if text.count(_COT_MARKER) != 1:
        raise SchemaError(f"views.sql must hold {_COT_MARKER} once; reinstall finetuner-otel")
    return text.replace(_COT_MARKER, "'" + COT_PATTERN.replace("'", "''") + "'")


@functools.cache
def views_sha256() -> str:
    return hashlib.sha256(views_sql().encode()).hexdigest()


def _table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ? "
        "AND table_catalog = current_database() AND table_schema = 'main'",
        [name],
    ).fetchone()
    return bool(row and row[0])


def applied_views(con: duckdb.DuckDBPyConnection) -> str | None:
    """The SHA-256 of the views.sql the store last applied (None before any)."""
    if not _table_exists(con, VIEWS_TABLE):
        return None
    row = con.execute(f"SELECT sha256 FROM {VIEWS_TABLE}").fetchone()
    return str(row[0]) if row else None


def schema_status(con: duckdb.DuckDBPyConnection | None) -> SchemaStatus:
    """The status of the store on ``con`` (None: a store not made yet)."""
    known = tuple(name for name, _ in MIGRATIONS)
    if con is None:
        return SchemaStatus((), known, None, views_sha256())
    return SchemaStatus(tuple(applied_migrations(con)), known, applied_views(con), views_sha256())


def is_current(con: duckdb.DuckDBPyConnection, path: object) -> bool:
    """Whether the store needs nothing from migrate(); SchemaError if it is from a newer
    version (or edited by hand). One query where both tables are there (a fifth of the time
    of looking them up first: it runs before every ingest); looked up otherwise."""
    try:
        row = con.execute(
            f"SELECT (SELECT list(name ORDER BY name) FROM {MIGRATIONS_TABLE}), "
            f"(SELECT list(sha256) FROM {VIEWS_TABLE})"
        ).fetchone()
    except duckdb.CatalogException:  # a store not made yet, or made before the views table
        return check_version(applied_migrations(con), path) == 0 and (
            applied_views(con) == views_sha256()
        )
    applied, views = row or (None, None)
    return check_version(list(applied or []), path) == 0 and (views or [None])[0] == views_sha256()


def applied_migrations(con: duckdb.DuckDBPyConnection) -> list[str]:
    if not _table_exists(con, MIGRATIONS_TABLE):
        return []
    rows = con.execute(f"SELECT name FROM {MIGRATIONS_TABLE} ORDER BY name").fetchall()
    return [row[0] for row in rows]


def check_version(applied: list[str], path: object) -> int:
    """How many known migrations are pending; SchemaError if the store is from a newer version."""
    known = [name for name, _ in MIGRATIONS]
    unknown = [name for name in applied if name not in known]
    if unknown:
        raise SchemaError(
            f"the store {path} was written by a newer finetuner-otel (it has migrations "
            f"{', '.join(unknown)}); upgrade finetuner-otel to read it. Nothing was changed."
        )
    if applied != known[: len(applied)]:
        raise SchemaError(
            f"the store {path} has migrations {applied} out of order; it was not made by "
            f"finetuner-otel or was edited by hand. Nothing was changed."
        )
    return len(known) - len(applied)


def migrate(con: duckdb.DuckDBPyConnection, path: object) -> int:
    """Bring the store up to date on a read-write connection: every pending migration, then
    views.sql if the store's views are not this version's, all in one transaction (all of it
    applies, or none); returns how many migrations ran."""
    if is_current(con, path):  # the usual case: a read, no write transaction
        return 0
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} "
            "(name VARCHAR PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp)"
        )
        applied = applied_migrations(con)
        pending = check_version(applied, path)
        for name, sql in MIGRATIONS[len(applied) :]:
            con.execute(sql)
            con.execute(f"INSERT INTO {MIGRATIONS_TABLE} (name) VALUES (?)", [name])
        if applied_views(con) != views_sha256():
            _apply_views(con)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return pending


def _apply_views(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(views_sql())
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {VIEWS_TABLE} (sha256 VARCHAR NOT NULL, "
        "applied_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp)"
    )
    con.execute(f"DELETE FROM {VIEWS_TABLE}")
    con.execute(f"INSERT INTO {VIEWS_TABLE} (sha256) VALUES (?)", [views_sha256()])
