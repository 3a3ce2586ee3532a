"""The one place that knows the store's schema: ordered, named migrations and the ingest columns.

Each migration runs in its own transaction together with the row that records it, so a store is
always at exactly one known version. A store that records a migration this version does not know
was written by a newer finetuner-otel and is refused rather than guessed at.
"""

from __future__ import annotations

import duckdb

from .._errors import SchemaError

MIGRATIONS_TABLE = "finetuner_migrations"

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_calls",
        """
        CREATE TABLE calls (
            -- trace_id || span_id: the span's identity, so re-ingesting a spool file is a no-op
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
            -- the same call in OpenAI's chat fine-tuning format: an example is
            -- {"messages": messages + [completion], "tools": tools}
            messages JSON,
            completion JSON,
            tools JSON,
            -- false for errors, incomplete streams, eval calls, cut-off or empty completions
            trainable BOOLEAN NOT NULL,
            untrainable_reason VARCHAR,
            service_name VARCHAR,
            scope_name VARCHAR,              -- the instrumentation that made the span
            attributes JSON,                 -- every other span attribute
            ingested_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
        CREATE INDEX calls_dataset ON calls (dataset);
        CREATE VIEW examples AS
            SELECT id, dataset, started_at, request_model, response_model,
                   CASE WHEN tools IS NULL
                        THEN json_object('messages', json_insert(messages, '$[#]', completion))
                        ELSE json_object('messages', json_insert(messages, '$[#]', completion),
                                         'tools', tools)
                   END AS example
            FROM calls WHERE trainable;
        CREATE VIEW datasets AS
            SELECT dataset AS name,
                   count(*) FILTER (WHERE trainable) AS examples,
                   count(*) AS calls,
                   count(*) FILTER (WHERE status = 'error') AS errors,
                   min(started_at) AS first_call_at,
                   max(started_at) AS last_call_at
            FROM calls GROUP BY dataset;
        """,
    ),
]

SCHEMA_VERSION = len(MIGRATIONS)

# Columns written by ingest, in the shape read_json needs (the spool holds exactly these keys).
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
    "messages": "JSON",
    "completion": "JSON",
    "tools": "JSON",
    "trainable": "BOOLEAN",
    "untrainable_reason": "VARCHAR",
    "service_name": "VARCHAR",
    "scope_name": "VARCHAR",
    "attributes": "JSON",
}


def applied_migrations(con: duckdb.DuckDBPyConnection) -> list[str]:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [MIGRATIONS_TABLE]
    ).fetchone()
    if not exists or not exists[0]:
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
    """Bring the store up to date on a read-write connection; returns how many migrations ran."""
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} "
        "(name VARCHAR PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp)"
    )
    applied = applied_migrations(con)
    pending = check_version(applied, path)
    for name, sql in MIGRATIONS[len(applied) :]:
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(sql)
            con.execute(f"INSERT INTO {MIGRATIONS_TABLE} (name) VALUES (?)", [name])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return pending
