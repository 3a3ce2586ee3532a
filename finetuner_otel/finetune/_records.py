"""The fine-tuning tables, written and read here only: ``finetune_uploads`` (what was uploaded,
from which dataset snapshot), ``finetune_jobs`` (each job as last seen), ``finetune_job_history``
(every status a job was seen in); the view ``finetune_lineage`` joins them.

Everything goes through the store's public API (``Store.transaction()`` to write, ``Store.sql()``
to read). A store that cannot be written is logged, never fatal: the provider has already done
what was asked, and the job can be followed without its record.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from .._errors import FinetunerError
from .._json import dumps
from ..store import Store
from ._types import JobState

_log = logging.getLogger("finetuner_otel.finetune")

_UPSERT_JOB = """
INSERT INTO finetune_jobs (provider, job_id, base_model, method, training_file,
    validation_file, hyperparameters, suffix, status, provider_status,
    fine_tuned_model, error, trained_tokens, created_at, finished_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (provider, job_id) DO UPDATE SET
    status = excluded.status, provider_status = excluded.provider_status,
    fine_tuned_model = excluded.fine_tuned_model, error = excluded.error,
    trained_tokens = excluded.trained_tokens,
    finished_at = excluded.finished_at,
    hyperparameters = coalesce(excluded.hyperparameters, hyperparameters),
    suffix = coalesce(suffix, excluded.suffix),
    updated_at = now()
"""
# A status is added to the history the first time the job is seen in it.
_ADD_HISTORY = """
INSERT INTO finetune_job_history (provider, job_id, status, provider_status)
SELECT ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM finetune_job_history
    WHERE provider = ? AND job_id = ? AND provider_status = ?)
"""
_JOB_COLUMNS = (
    "job_id, base_model, status, provider_status, fine_tuned_model, error, trained_tokens, "
    "created_at, finished_at, training_file, validation_file, method, hyperparameters"
)


def _write(store: Store, what: str, *statements: tuple[str, list[Any]]) -> None:
    """Run ``statements`` in one transaction; a failure is logged (see the module docstring)."""
    try:
        with store.transaction() as con:
            for sql, params in statements:
                con.execute(sql, params)
    except FinetunerError as exc:
        _log.warning("could not record %s in %s: %s", what, store.location, exc)


def record_upload(
    store: Store,
    provider: str,
    file_id: str,
    *,
    dataset: str,
    snapshot: str | None,
    kind: str,
    examples: int,
) -> None:
    """An uploaded file: its provider and id, the dataset (and snapshot) it holds, its format
    (openai_chat or openai_dpo) and how many examples."""
    _write(
        store,
        f"upload {file_id}",
        (
            "INSERT OR REPLACE INTO finetune_uploads "
            "(provider, file_id, dataset, snapshot_id, format, examples) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [provider, file_id, dataset, snapshot, kind, examples],
        ),
    )


def record_state(store: Store, state: JobState, *, suffix: str | None = None) -> None:
    """A job as the provider last described it, and the status in its history."""
    s = state
    hyperparameters = dumps(dict(s.hyperparameters)) if s.hyperparameters else None
    job: list[Any] = [s.provider, s.id, s.base_model, s.method, s.training_file]
    job += [s.validation_file, hyperparameters, suffix, s.status, s.provider_status]
    job += [s.fine_tuned_model, s.error, s.trained_tokens, s.created_at, s.finished_at]
    seen = [s.provider, s.id, s.status, s.provider_status, s.provider, s.id, s.provider_status]
    _write(store, f"job {s.id}", (_UPSERT_JOB, job), (_ADD_HISTORY, seen))


def recorded_states(store: Store, provider: str) -> list[JobState]:
    """The jobs of ``provider`` as last recorded, newest first."""
    if not store.exists():
        return []
    rows = store.sql(
        f"SELECT {_JOB_COLUMNS} FROM finetune_jobs WHERE provider = ? "
        f"ORDER BY created_at DESC NULLS LAST, updated_at DESC",
        [provider],
    ).rows
    return [
        JobState(
            id=r[0],
            provider=provider,
            base_model=r[1],
            status=r[2],
            provider_status=r[3],
            fine_tuned_model=r[4],
            error=r[5],
            trained_tokens=r[6],
            created_at=r[7],
            finished_at=r[8],
            training_file=r[9],
            validation_file=r[10],
            method=r[11] or "supervised",
            hyperparameters=json.loads(r[12]) if r[12] else {},
        )
        for r in rows
    ]
