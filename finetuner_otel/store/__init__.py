"""The DuckDB store of captured calls: ``Store``, ``Dataset``, ``Example``, and validation.

Its names load on first use, so a process that only writes spool files (an app capturing calls:
``finetuner_otel.store.spool``) never imports DuckDB.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .._lazy import load

if TYPE_CHECKING:
    from . import _reads as reads  # the read model the CLI and the UI share
    from ._call import Call
    from ._dataset import Dataset, Example, Export
    from ._leakage import Leakage, Overlap
    from ._preferences import validate_jsonl, validate_preference_records  # issue 20: DPO too
    from ._schema import SchemaStatus
    from ._store import DatasetSummary, ImportResult, Snapshot, SQLResult, Store
    from ._validate import Problem, Stats, ValidationReport, validate_records

_LAZY = {
    "Call": "._call",
    "Dataset": "._dataset",
    "Example": "._dataset",
    "Export": "._dataset",
    "Leakage": "._leakage",
    "Overlap": "._leakage",
    "validate_jsonl": "._preferences",
    "validate_preference_records": "._preferences",
    "SchemaStatus": "._schema",
    "DatasetSummary": "._store",
    "ImportResult": "._store",
    "Snapshot": "._store",
    "SQLResult": "._store",
    "Store": "._store",
    "Problem": "._validate",
    "Stats": "._validate",
    "ValidationReport": "._validate",
    "validate_records": "._validate",
}

__all__ = [
    "Call",
    "Dataset",
    "DatasetSummary",
    "Example",
    "Export",
    "ImportResult",
    "Leakage",
    "Overlap",
    "Problem",
    "SQLResult",
    "SchemaStatus",
    "Snapshot",
    "Stats",
    "Store",
    "ValidationReport",
    "reads",
    "validate_jsonl",
    "validate_preference_records",  # finetune validates the preference pairs it uploads
    "validate_records",  # finetune validates the records it uploads
]


def __getattr__(name: str) -> Any:
    if name == "reads":  # a module, not a name in one
        globals()[name] = module = importlib.import_module("._reads", __name__)
        return module
    return load(__name__, _LAZY, name, globals())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
