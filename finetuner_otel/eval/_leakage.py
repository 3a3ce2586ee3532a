"""The leakage check of an eval run: when the model was fine-tuned by a job whose training
snapshot the store knows (``finetune_lineage``), the eval examples whose input is also in that
snapshot (``Dataset.leakage``) are marked, and the run's accuracy is given without them too.

The result is plain JSON, kept with the run (``EvalResult.leakage``)::

    {"training_snapshot": "<sha256>", "training_dataset": "support", "job": "ftjob-...",
     "method": "...", "exact": 3, "near": 1,
     "examples": {"<eval example id>": {"kind": "near", "similarity": 0.87,
                                        "training_example": "<call id>"}}}
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from typing import Any

from .._errors import FinetunerError
from ..store import Example, Store

_log = logging.getLogger("finetuner_otel.eval")


def training_snapshot(store: Store, model: str) -> tuple[str, str] | None:
    """The latest job that made ``model`` and the snapshot it trained on, if the store has
    both: (job id, snapshot id)."""
    if not store.exists():
        return None
    rows = store.sql(
        "SELECT job_id, training_snapshot FROM finetune_lineage "
        "WHERE fine_tuned_model = ? AND training_snapshot IS NOT NULL "
        "ORDER BY finished_at DESC NULLS LAST, created_at DESC NULLS LAST LIMIT 1",
        [model],
    ).rows
    return (rows[0][0], rows[0][1]) if rows else None


def check_leakage(store: Store, model: str, examples: Sequence[Example]) -> dict[str, Any] | None:
    """The leakage of ``examples`` from ``model``'s training snapshot (see the module
    docstring), or None when the model's training data is not known here."""
    try:
        found = training_snapshot(store, model)
        if found is None:
            return None
        job, snapshot = found
        training = store.get_snapshot(snapshot)
        near = importlib.util.find_spec("datasketch") is not None
        if not near:
            _log.warning(
                "leakage: checking exact repeats only; install finetuner-otel[leakage] for "
                "near-duplicates"
            )
        report = training.leakage(examples, near=near)
    except FinetunerError as exc:  # a store without the lineage, a snapshot gone
        _log.warning("leakage: not checked for %s: %s", model, exc)
        return None
    return {
        "training_snapshot": snapshot,
        "training_dataset": training.name,
        "job": job,
        "method": report.method,
        "exact": len(report.exact),
        "near": len(report.near),
        "examples": {
            o.other: {
                "kind": o.kind,
                "similarity": round(o.similarity, 4),
                "training_example": o.example,
            }
            for o in report.overlaps
        },
    }
