"""The read model: the queries the CLI and the UI share, over a ``Store``'s public ``sql()``.

One function per thing a person looks at: the datasets with their counts, a page of calls
(filtered, newest first, by keyset), one call with its feedback history, fine-tuning jobs and
eval runs. Each returns plain rows (``dict``s keyed by column), so a template and a table
printer read the same values; neither writes its own SQL against the store's tables.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .._errors import CallNotFoundError, ConfigurationError
from .._messages import last_user_message, message_text
from ._store import Store

__all__ = [
    "CALL_STATUSES",
    "FEEDBACK_FILTERS",
    "LINEAGE_COLUMNS",
    "CallFilters",
    "CallPage",
    "call_detail",
    "call_ids_starting",
    "dataset_exists",
    "dataset_facets",
    "dataset_summaries",
    "eval_runs",
    "finetune_job",
    "finetune_jobs",
    "finetune_lineage",
    "job_provider",
    "list_calls",
]

PAGE_SIZE = 50
CALL_STATUSES = ("ok", "error", "incomplete")
# Feedback filters: what the latest verdict or correction of a call says.
FEEDBACK_FILTERS = {
    "unreviewed": "f.call_id IS NULL AND p.call_id IS NULL",
    "accepted": "f.verdict = 'accept'",
    "rejected": "f.verdict = 'reject'",
    "corrected": "f.correction IS NOT NULL",
    "preferred": "p.call_id IS NOT NULL",
}
_TRAINABLE = {"yes": "r.trainable", "no": "NOT r.trainable"}


# --- datasets ---------------------------------------------------------------------------------


def dataset_summaries(store: Store) -> list[dict[str, Any]]:
    """Every dataset, by name: its examples, calls, errors, first and last call, tokens in and
    out (and the mean in), and how many calls were accepted, rejected and corrected."""
    return store.sql(
        """
        SELECT d.name, d.examples, d.calls, d.errors, d.first_call_at, d.last_call_at,
               t.input_tokens, t.output_tokens, t.mean_input_tokens,
               coalesce(fb.accepted, 0) AS accepted, coalesce(fb.rejected, 0) AS rejected,
               coalesce(fb.corrected, 0) AS corrected
        FROM datasets d
        LEFT JOIN (
            SELECT dataset, sum(input_tokens) AS input_tokens,
                   sum(output_tokens) AS output_tokens,
                   round(avg(input_tokens)) AS mean_input_tokens
            FROM recorded_calls GROUP BY dataset
        ) t ON t.dataset = d.name
        LEFT JOIN (
            SELECT r.dataset,
                   count(*) FILTER (WHERE f.verdict = 'accept') AS accepted,
                   count(*) FILTER (WHERE f.verdict = 'reject') AS rejected,
                   count(*) FILTER (WHERE f.correction IS NOT NULL) AS corrected
            FROM call_feedback f JOIN recorded_calls r ON r.id = f.call_id GROUP BY r.dataset
        ) fb ON fb.dataset = d.name
        ORDER BY d.name
        """
    ).dicts()


def dataset_exists(store: Store, name: str) -> bool:
    """Whether dataset ``name`` has any recorded call."""
    return bool(store.sql("SELECT count(*) FROM datasets WHERE name = ?", [name]).rows[0][0])


def dataset_facets(store: Store, dataset: str) -> dict[str, list[str]]:
    """The requested models and prompt versions of a dataset's calls (what its filters offer)."""
    row = store.sql(
        """
        SELECT list(DISTINCT request_model ORDER BY request_model)
                   FILTER (WHERE request_model IS NOT NULL),
               list(DISTINCT attributes->>'finetuner.prompt.version'
                    ORDER BY attributes->>'finetuner.prompt.version')
                   FILTER (WHERE attributes->>'finetuner.prompt.version' IS NOT NULL)
        FROM recorded_calls WHERE dataset = ?
        """,
        [dataset],
    ).rows[0]
    return {"models": list(row[0] or []), "prompt_versions": list(row[1] or [])}


# --- calls ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallFilters:
    """Which calls a list shows; empty text means any. Unknown values are refused."""

    dataset: str | None = None
    q: str = ""  # words in the request or the answer, or a call id
    status: str = ""
    trainable: str = ""  # yes | no
    model: str = ""
    prompt_version: str = ""
    feedback: str = ""  # one of FEEDBACK_FILTERS

    def __post_init__(self) -> None:
        for name, allowed in (
            ("status", CALL_STATUSES),
            ("trainable", tuple(_TRAINABLE)),
            ("feedback", tuple(FEEDBACK_FILTERS)),
        ):
            value = getattr(self, name)
            if value and value not in allowed:
                raise ConfigurationError(
                    f"{name}={value!r} is not a filter here; use one of {', '.join(allowed)}"
                )

    @classmethod
    def from_query(cls, params: Mapping[str, str], dataset: str | None = None) -> CallFilters:
        """The filters in a query string (the names of ``query()``), for ``dataset``."""
        return cls(dataset, **{name: (params.get(name) or "").strip() for name in cls.names()})

    @staticmethod
    def names() -> tuple[str, ...]:
        """The filters a query string can set (all but the dataset)."""
        return tuple(f.name for f in fields(CallFilters) if f.name != "dataset")

    def query(self) -> dict[str, str]:
        """The filters that are set, for links that keep them."""
        return {name: getattr(self, name) for name in self.names() if getattr(self, name)}

    def where(self) -> tuple[str, list[Any]]:
        """A predicate over recorded_calls r, call_feedback f and preferred p, with values."""
        conditions, values = ["true"], []
        if self.q:
            # The text of the request and the answer (JSON text, so words inside it match).
            conditions.append(
                "(contains(lower(CAST(r.input_messages AS VARCHAR)), ?) "
                "OR contains(lower(CAST(r.output_messages AS VARCHAR)), ?) OR r.id = ?)"
            )
            values += [self.q.lower(), self.q.lower(), self.q]
        for value, condition in (
            (self.dataset, "r.dataset = ?"),
            (self.status, "r.status = ?"),
            (self.model, "r.request_model = ?"),
            (self.prompt_version, "r.attributes->>'finetuner.prompt.version' = ?"),
        ):
            if value:
                conditions.append(condition)
                values.append(value)
        if self.trainable:
            conditions.append(_TRAINABLE[self.trainable])
        if self.feedback:
            conditions.append(FEEDBACK_FILTERS[self.feedback])
        return " AND ".join(conditions), values


@dataclass
class CallPage:
    """One page of calls, newest first, and the cursors of the pages around it."""

    rows: list[dict[str, Any]]
    total: int
    newer: str | None = None  # cursor of the page before (newer calls), None on the first
    older: str | None = None  # cursor of the page after (older calls), None on the last
    filters: CallFilters = field(default_factory=CallFilters)


_FROM = """
    FROM recorded_calls r
    LEFT JOIN call_feedback f ON f.call_id = r.id
    LEFT JOIN (SELECT DISTINCT call_id FROM preferences) p ON p.call_id = r.id
"""
_PAGE_COLUMNS = """
    r.id, r.dataset, epoch_us(r.started_at) AS at_us, r.started_at, r.request_model, r.status,
    r.trainable, r.untrainable_reason, r.input_tokens, r.output_tokens,
    r.attributes->>'finetuner.prompt.version' AS prompt_version,
    f.verdict, f.correction IS NOT NULL AS corrected, p.call_id IS NOT NULL AS preferred,
    r.input_messages, r.output_messages
"""


def _cursor(row: Mapping[str, Any]) -> str:
    return f"{row['at_us']}:{row['id']}"


def _parse_cursor(value: str) -> tuple[int, str]:
    at, _, ident = value.partition(":")
    try:
        return int(at), ident
    except ValueError:
        raise ConfigurationError(
            f"the page cursor {value!r} is not one this app made; go back to the first page"
        ) from None


def list_calls(
    store: Store,
    filters: CallFilters | None = None,
    *,
    older_than: str | None = None,
    newer_than: str | None = None,
    size: int = PAGE_SIZE,
) -> CallPage:
    """One page of calls, newest first, by keyset (never OFFSET): a page deep in 100,000 rows
    costs what the first does, and only its rows are read in full. Each row has the call's
    columns, its feedback, ``question`` and ``answer`` previews and the ``completion`` text."""
    filters = filters or CallFilters()
    where, values = filters.where()
    total = store.sql(f"SELECT count(*) {_FROM} WHERE {where}", values).rows[0][0]
    order = "DESC"
    if older_than or newer_than:
        at, ident = _parse_cursor(older_than or newer_than or "")
        sign = "<" if older_than else ">"
        where += (
            f" AND (epoch_us(r.started_at) {sign} ? "
            f"OR (epoch_us(r.started_at) = ? AND r.id {sign} ?))"
        )
        values += [at, at, ident]
        order = "DESC" if older_than else "ASC"
    rows = store.sql(
        f"""
        SELECT page.*, openai_completion(page.output_messages)->>'content' AS completion
        FROM (SELECT {_PAGE_COLUMNS} {_FROM} WHERE {where}
              ORDER BY r.started_at {order}, r.id {order} LIMIT ?) page
        ORDER BY page.started_at {order}, page.id {order}
        """,
        [*values, size + 1],
    ).dicts()
    more = len(rows) > size
    rows = rows[:size]
    going_back = order == "ASC"
    if going_back:
        rows.reverse()
    for row in rows:
        row["question"] = _preview(row.pop("input_messages"), user=True)
        row["answer"] = _preview(row.pop("output_messages"), user=False)
    page = CallPage(rows, total, filters=filters)
    if rows:
        page.older = _cursor(rows[-1]) if (more or going_back) else None
        page.newer = _cursor(rows[0]) if (older_than or (going_back and more)) else None
    return page


def _preview(value: Any, *, user: bool, limit: int = 160) -> str:
    """The text of the last user message (or of the first answer) of semconv messages."""
    try:
        messages = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return ""
    if not isinstance(messages, list) or not messages:
        return ""
    if user:
        chosen = last_user_message(messages)
    else:
        chosen = messages[0] if isinstance(messages[0], dict) else None
    if chosen is None:
        return ""
    parts = chosen.get("parts") or []
    text = " ".join(
        str(p.get("content") or "")
        if p.get("type") == "text"
        else f"[{p.get('type')}{': ' + str(p.get('name')) if p.get('name') else ''}]"
        for p in parts
        if isinstance(p, dict)
    ).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def call_ids_starting(store: Store, prefix: str, limit: int = 2) -> list[str]:
    """Up to ``limit`` ids of calls that start with ``prefix`` (a unique prefix names a call)."""
    rows = store.sql(
        "SELECT id FROM recorded_calls WHERE starts_with(id, ?) ORDER BY id LIMIT ?",
        [prefix, limit],
    ).rows
    return [row[0] for row in rows]


def call_detail(store: Store, call_id: str) -> dict[str, Any] | None:
    """One call in full (``store.get_call``'s fields), or None: the OpenAI messages,
    completion and tools, its latest verdict and correction, metadata, and its ``history`` of
    feedback and ``preferences``."""
    try:
        call = store.get_call(call_id)
    except CallNotFoundError:
        return None
    detail = call.to_dict()
    detail["history"] = _feedback_history(store, call_id)
    detail["preferences"] = _preferences(store, call_id)
    return detail


def _feedback_history(store: Store, call_id: str) -> list[dict[str, Any]]:
    """Every verdict and correction of a call, oldest first (a correction as its text)."""
    history = store.sql(
        "SELECT kind, completion, note, created_at FROM feedback WHERE call_id = ? "
        "ORDER BY created_at",
        [call_id],
    ).dicts()
    for item in history:
        completion = item["completion"]
        item["completion"] = message_text(json.loads(completion)) if completion else None
    return history


def _preferences(store: Store, call_id: str) -> list[dict[str, Any]]:
    """A call's preference pairs, oldest first, as the text of each answer."""
    pairs = store.sql(
        "SELECT preferred, non_preferred, note, created_at FROM preferences WHERE call_id = ? "
        "ORDER BY created_at",
        [call_id],
    ).dicts()
    for item in pairs:
        item["preferred"] = message_text(json.loads(item["preferred"]))
        item["non_preferred"] = message_text(json.loads(item["non_preferred"]))
    return pairs


# --- fine-tuning jobs and eval runs -----------------------------------------------------------


def finetune_jobs(store: Store) -> list[dict[str, Any]]:
    """Every fine-tuning job, newest first, with the dataset it trained on."""
    return store.sql(
        """
        SELECT j.provider, j.job_id, j.base_model, j.method, j.status, j.provider_status,
               j.fine_tuned_model, j.error, j.trained_tokens, j.created_at, j.finished_at,
               j.updated_at, l.dataset, l.training_examples, l.validation_examples
        FROM finetune_jobs j
        LEFT JOIN finetune_lineage l ON l.provider = j.provider AND l.job_id = j.job_id
        ORDER BY coalesce(j.created_at, j.updated_at) DESC
        """
    ).dicts()


LINEAGE_COLUMNS = (
    "provider",
    "job_id",
    "base_model",
    "method",
    "status",
    "fine_tuned_model",
    "dataset",
    "training_examples",
    "created_at",
)


def finetune_lineage(store: Store) -> list[dict[str, Any]]:
    """What each job trained on, newest first: the ``LINEAGE_COLUMNS`` of each."""
    return store.sql(
        f"SELECT {', '.join(LINEAGE_COLUMNS)} FROM finetune_lineage ORDER BY created_at DESC"
    ).dicts()


def finetune_job(store: Store, provider: str, job_id: str) -> dict[str, Any] | None:
    """One job in full, with its files, hyperparameters and status ``history``; or None."""
    rows = store.sql(
        "SELECT * FROM finetune_lineage WHERE provider = ? AND job_id = ?", [provider, job_id]
    ).dicts()
    if not rows:
        return None
    row = rows[0]
    detail = store.sql(
        "SELECT provider_status, error, trained_tokens, training_file, validation_file, suffix, "
        "updated_at FROM finetune_jobs WHERE provider = ? AND job_id = ?",
        [provider, job_id],
    ).dicts()[0]
    row.update(detail)
    hyper = row.get("hyperparameters")
    row["hyperparameters"] = json.loads(hyper) if isinstance(hyper, str) else hyper
    row["history"] = store.sql(
        "SELECT status, provider_status, observed_at FROM finetune_job_history "
        "WHERE provider = ? AND job_id = ? ORDER BY observed_at",
        [provider, job_id],
    ).dicts()
    return row


def job_provider(store: Store, job_id: str) -> str | None:
    """The provider a stored job ran on, or None when the store has no such job."""
    rows = store.sql(
        "SELECT DISTINCT provider FROM finetune_jobs WHERE job_id = ? ORDER BY 1", [job_id]
    ).rows
    return str(rows[0][0]) if rows else None


def eval_runs(store: Store) -> list[dict[str, Any]]:
    """Every eval run, newest first, with its accuracy and interval."""
    return store.sql(
        "SELECT id, eval, model, dataset, examples, scored, errors, accuracy, ci_low, ci_high, "
        "calls, cached, started_at FROM eval_runs ORDER BY started_at DESC"
    ).dicts()


def shadowed(store: Store) -> list[dict[str, Any]]:
    """Each dataset and candidate model a shadow called, with its count of calls: the shadow
    runs ``finetuner_otel.eval.shadow_report`` can score."""
    if not store.exists():
        return []
    result = store.sql(
        "SELECT dataset, request_model AS candidate, count(*) AS calls, "
        "max(started_at) AS last_call_at FROM calls "
        "WHERE attributes->>'finetuner.purpose' = 'shadow' "
        "GROUP BY dataset, request_model ORDER BY last_call_at DESC"
    )
    return result.dicts()
