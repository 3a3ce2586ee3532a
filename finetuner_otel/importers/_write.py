"""What every importer shares: one imported row, the batch writer, and what is stored already.

Rows are written with ``Store.add_examples``, the store's public way to store OpenAI-format
examples as calls: the records go through the same mapping as captured calls (the
instrumentation's parts mapping, the one row encoder), so an imported row exports, validates
and trains as a captured one does. Each row carries its provenance in ``attributes``:
``finetuner.source = "import"`` (the ``calls.source`` column), ``finetuner.import.source``
(``openai-stored``, ``openpipe``, ``langfuse``) and ``finetuner.import.id``, the id it had
there (for a file with no ids, a hash of the example), which is what makes a re-run add
nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .._errors import ConfigurationError
from .._settings import DEFAULT_DATASET, check_dataset_name
from ..store import Store

SOURCE = "finetuner.source"
IMPORT_SOURCE = "finetuner.import.source"
IMPORT_ID = "finetuner.import.id"
METADATA = "finetuner.import.metadata"
DATASET_KEYS = ("dataset", "dataset_name")  # metadata keys that pick the dataset
# Content per add_examples (one spool file, ingested in one transaction), as JSON of records
# and attributes; its spool file is about 2.5 times that. The store's ingest runs in bounded
# memory (store/_connection.py, 32 MiB to work in): a spool file of 2,000 imported rows
# (2.7 MB) ran out of it, one of 1,000 (1.4 MB) did not.
MAX_BATCH_BYTES = 400_000
_MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id", "weight")


@dataclass(frozen=True)
class ImportSummary:
    """What an import did: rows ``added``, rows ``skipped`` (stored already, or outside the
    filters), per dataset the rows added, and ``pages`` read (an API import)."""

    source: str
    added: int
    skipped: int
    datasets: dict[str, int] = field(default_factory=dict)
    pages: int = 0

    def summary(self) -> str:
        where = ", ".join(f"{n} to {d}" for d, n in sorted(self.datasets.items())) or "nothing"
        pages = f" from {self.pages} pages" if self.pages else ""
        return f"{self.source}: {self.added} added ({where}), {self.skipped} skipped{pages}"


class Row(NamedTuple):
    """One example to import: its record, the dataset and model, and its attributes."""

    record: dict[str, Any]
    dataset: str
    model: str | None
    attributes: dict[str, Any]


def pick_dataset(
    metadata: Mapping[str, Any] | None, fallback: str | None
) -> tuple[str, str | None]:
    """The dataset a row goes to: a ``dataset`` or ``dataset_name`` metadata key, else
    ``fallback``, else ``default``; and why a metadata name was refused, if one was."""
    default = fallback or DEFAULT_DATASET
    for key in DATASET_KEYS:
        name = (metadata or {}).get(key)
        if name is None:
            continue
        try:
            return check_dataset_name(name, source=f"metadata {key!r}"), None
        except ConfigurationError as exc:
            return default, str(exc)
    return default, None


def check_fallback(dataset: str | None) -> str | None:
    """``--dataset`` checked before anything is read."""
    return None if dataset is None else check_dataset_name(dataset, source="dataset")


def clean_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI chat message with only the fields a fine-tuning example has."""
    out = {k: message[k] for k in _MESSAGE_KEYS if message.get(k) is not None}
    if message.get("role") == "assistant" and "content" not in out:
        out["content"] = None
    elif "content" not in out:
        out["content"] = ""
    return out


def provenance(source: str, original_id: str, **extra: Any) -> dict[str, Any]:
    """The attributes that say where a row came from."""
    attributes = {SOURCE: "import", IMPORT_SOURCE: source, IMPORT_ID: original_id}
    attributes.update({k: v for k, v in extra.items() if v is not None})
    return attributes


FINISH_REASON = "finetuner.import.finish_reason"


def stored_ids(store: Store, source: str) -> set[str]:
    """The original ids of the rows already imported from ``source``."""
    if not store.exists() and not store.pending():
        return set()
    rows = store.sql(
        "SELECT attributes->>'finetuner.import.id' FROM calls "
        "WHERE source = 'import' AND attributes->>'finetuner.import.source' = ?",
        [source],
    ).rows
    return {row[0] for row in rows if row[0] is not None}


def _chunks(rows: list[Row], max_bytes: int) -> list[list[Row]]:
    """``rows`` in runs of at most ``max_bytes`` of JSON (a row larger alone is a run alone)."""
    chunks: list[list[Row]] = [[]]
    size = 0
    for row in rows:
        weight = len(json.dumps(row.record, default=str)) + len(json.dumps(row.attributes))
        if chunks[-1] and size + weight > max_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append(row)
        size += weight
    return chunks


def write_rows(store: Store, rows: Sequence[Row]) -> dict[str, int]:
    """Store ``rows``, one ``add_examples`` per dataset and model (and MAX_BATCH_BYTES),
    in their order; the rows added per dataset."""
    groups: dict[tuple[str, str | None], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.dataset, row.model), []).append(row)
    added: dict[str, int] = {}
    for (dataset, model), group in groups.items():
        for chunk in _chunks(group, MAX_BATCH_BYTES):
            store.add_examples(
                [row.record for row in chunk],
                dataset=dataset,
                model=model,
                attributes=[row.attributes for row in chunk],
                # the platform's own word on how each answer ended: one cut off is no example
                finish_reasons=[row.attributes.get(FINISH_REASON) for row in chunk],
            )
            added[dataset] = added.get(dataset, 0) + len(chunk)
    return added


def merge(total: dict[str, int], more: Mapping[str, int]) -> None:
    for dataset, n in more.items():
        total[dataset] = total.get(dataset, 0) + n
