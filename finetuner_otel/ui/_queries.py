"""What the pages read from the store: one short query each, a page of rows at a time."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .._errors import ConfigurationError
from .._messages import last_user_message, message_text
from ..store import Store

PAGE_SIZE = 50
# Feedback filters: what the latest verdict or correction of a call says.
FEEDBACK_FILTERS = {
    "unreviewed": "f.call_id IS NULL AND p.call_id IS NULL",
    "accepted": "f.verdict = 'accept'",
    "rejected": "f.verdict = 'reject'",
    "corrected": "f.correction IS NOT NULL",
    "preferred": "p.call_id IS NOT NULL",
}
STATUSES = ("ok", "error", "incomplete")
TRAINABLE = {"yes": "r.trainable", "no": "NOT r.trainable"}


def datasets(store: Store) -> list[dict[str, Any]]:
    """Every dataset with its counts, tokens and feedback."""
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
    return bool(store.sql("SELECT count(*) FROM datasets WHERE name = ?", [name]).rows[0][0])


def facets(store: Store, dataset: str) -> dict[str, list[str]]:
    """The values the filters of a dataset's page offer."""
    rows = store.sql(
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
    return {"models": list(rows[0] or []), "prompt_versions": list(rows[1] or [])}


@dataclass
class Filters:
    """A dataset page's filters, from its query string; unknown values are refused."""

    q: str = ""
    status: str = ""
    trainable: str = ""
    model: str = ""
    prompt_version: str = ""
    feedback: str = ""

    @classmethod
    def parse(cls, params: Any) -> Filters:
        filters = cls(**{name: (params.get(name) or "").strip() for name in cls.fields()})
        for name, allowed in (
            ("status", STATUSES),
            ("trainable", tuple(TRAINABLE)),
            ("feedback", tuple(FEEDBACK_FILTERS)),
        ):
            value = getattr(filters, name)
            if value and value not in allowed:
                raise ConfigurationError(
                    f"{name}={value!r} is not a filter here; use one of {', '.join(allowed)}"
                )
        return filters

    @staticmethod
    def fields() -> tuple[str, ...]:
        return ("q", "status", "trainable", "model", "prompt_version", "feedback")

    def query(self) -> dict[str, str]:
        """The filters that are set, for links that keep them."""
        return {name: getattr(self, name) for name in self.fields() if getattr(self, name)}

    def where(self, dataset: str) -> tuple[str, list[Any]]:
        conditions, values = ["r.dataset = ?"], [dataset]
        if self.q:
            # The text of the request and the answer (JSON text, so words inside it match).
            conditions.append(
                "(contains(lower(CAST(r.input_messages AS VARCHAR)), ?) "
                "OR contains(lower(CAST(r.output_messages AS VARCHAR)), ?) OR r.id = ?)"
            )
            needle = self.q.lower()
            values += [needle, needle, self.q]
        if self.status:
            conditions.append("r.status = ?")
            values.append(self.status)
        if self.trainable:
            conditions.append(TRAINABLE[self.trainable])
        if self.model:
            conditions.append("r.request_model = ?")
            values.append(self.model)
        if self.prompt_version:
            conditions.append("r.attributes->>'finetuner.prompt.version' = ?")
            values.append(self.prompt_version)
        if self.feedback:
            conditions.append(FEEDBACK_FILTERS[self.feedback])
        return " AND ".join(conditions), values


@dataclass
class Page:
    rows: list[dict[str, Any]]
    total: int
    newer: str | None = None  # cursor of the page before (newer calls), None on the first
    older: str | None = None  # cursor of the page after (older calls), None on the last
    filters: Filters = field(default_factory=Filters)


def _cursor(row: dict[str, Any]) -> str:
    return f"{row['at_us']}:{row['id']}"


def _parse_cursor(value: str) -> tuple[int, str]:
    at, _, ident = value.partition(":")
    try:
        return int(at), ident
    except ValueError:
        raise ConfigurationError(
            f"the page cursor {value!r} is not one this app made; go back to the first page"
        ) from None


_FROM = """
    FROM recorded_calls r
    LEFT JOIN call_feedback f ON f.call_id = r.id
    LEFT JOIN (SELECT DISTINCT call_id FROM preferences) p ON p.call_id = r.id
"""


def examples_page(
    store: Store,
    dataset: str,
    filters: Filters,
    *,
    older_than: str | None = None,
    newer_than: str | None = None,
    size: int = PAGE_SIZE,
) -> Page:
    """One page of a dataset's calls, newest first, by keyset (never OFFSET): a page deep in
    100,000 rows costs what the first does, and only its rows are read in full."""
    where, values = filters.where(dataset)
    total = store.sql(f"SELECT count(*) {_FROM} WHERE {where}", values).rows[0][0]
    order = "DESC"
    if older_than:
        at, ident = _parse_cursor(older_than)
        where += " AND (epoch_us(r.started_at) < ? OR (epoch_us(r.started_at) = ? AND r.id < ?))"
        values += [at, at, ident]
    elif newer_than:
        at, ident = _parse_cursor(newer_than)
        where += " AND (epoch_us(r.started_at) > ? OR (epoch_us(r.started_at) = ? AND r.id > ?))"
        values += [at, at, ident]
        order = "ASC"
    rows = store.sql(
        f"""
        SELECT r.id, epoch_us(r.started_at) AS at_us, r.started_at, r.request_model, r.status,
               r.trainable, r.untrainable_reason, r.input_tokens, r.output_tokens,
               r.attributes->>'finetuner.prompt.version' AS prompt_version,
               f.verdict, f.correction IS NOT NULL AS corrected, p.call_id IS NOT NULL AS preferred,
               r.input_messages, r.output_messages
        {_FROM}
        WHERE {where}
        ORDER BY r.started_at {order}, r.id {order}
        LIMIT ?
        """,
        [*values, size + 1],
    ).dicts()
    more = len(rows) > size
    rows = rows[:size]
    if order == "ASC":
        rows.reverse()
    for row in rows:
        row["question"] = _preview(row.pop("input_messages"), user=True)
        row["answer"] = _preview(row.pop("output_messages"), user=False)
    page = Page(rows, total, filters=filters)
    if rows:
        going_back = order == "ASC"
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


def call(store: Store, call_id: str) -> dict[str, Any] | None:
    """One call in full: the OpenAI messages, the completion (and its correction), metadata."""
    rows = store.sql(
        """
        SELECT c.id, c.dataset, c.trace_id, c.span_id, c.parent_span_id, c.started_at,
               c.duration_ms, c.status, c.error_type, c.error_message, c.provider,
               c.request_model, c.response_model, c.response_id, c.finish_reasons,
               c.input_tokens, c.output_tokens, c.trainable, c.untrainable_reason,
               c.service_name, c.scope_name, c.source, c.prompt_name, c.prompt_version,
               c.prompt_variables, c.request_options, c.attributes,
               c.messages, c.completion, c.tools, f.verdict, f.correction
        FROM calls c LEFT JOIN call_feedback f ON f.call_id = c.id
        WHERE c.id = ?
        """,
        [call_id],
    ).dicts()
    if not rows:
        return None
    row = rows[0]
    for key in (
        "messages",
        "completion",
        "tools",
        "correction",
        "prompt_variables",
        "request_options",
        "attributes",
    ):
        value = row.get(key)
        row[key] = json.loads(value) if isinstance(value, str) else value
    row["history"] = store.sql(
        "SELECT kind, completion, note, created_at FROM feedback WHERE call_id = ? "
        "ORDER BY created_at",
        [call_id],
    ).dicts()
    row["preferences"] = store.sql(
        "SELECT preferred, non_preferred, note, created_at FROM preferences WHERE call_id = ? "
        "ORDER BY created_at",
        [call_id],
    ).dicts()
    for item in row["preferences"]:
        item["preferred"] = message_text(json.loads(item["preferred"]))
        item["non_preferred"] = message_text(json.loads(item["non_preferred"]))
    for item in row["history"]:
        completion = item["completion"]
        item["completion"] = message_text(json.loads(completion)) if completion else None
    return row


def jobs(store: Store) -> list[dict[str, Any]]:
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


def job(store: Store, provider: str, job_id: str) -> dict[str, Any] | None:
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


def eval_runs(store: Store) -> list[dict[str, Any]]:
    return store.sql(
        "SELECT id, eval, model, dataset, examples, scored, errors, accuracy, ci_low, ci_high, "
        "calls, cached, started_at FROM eval_runs ORDER BY started_at DESC"
    ).dicts()
