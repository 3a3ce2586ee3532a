"""The DuckDB store of captured calls: ``Store``, ``Dataset``, ``Example``, and validation."""

from . import _reads as reads  # the read model the CLI and the UI share
from ._call import Call
from ._dataset import Dataset, Example, Export
from ._leakage import Leakage, Overlap
from ._preferences import validate_jsonl, validate_preference_records  # issue 20: DPO too
from ._schema import SchemaStatus
from ._store import DatasetSummary, ImportResult, Snapshot, SQLResult, Store
from ._validate import Problem, Stats, ValidationReport, validate_records

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
