"""The DuckDB store of captured calls: ``Store``, ``Dataset``, ``Example``, and validation."""

from ._dataset import Dataset, Example, Export
from ._store import DatasetSummary, ImportResult, Snapshot, SQLResult, Store
from ._validate import Problem, Stats, ValidationReport, validate_jsonl

__all__ = [
    "Dataset",
    "DatasetSummary",
    "Example",
    "Export",
    "ImportResult",
    "Problem",
    "SQLResult",
    "Snapshot",
    "Stats",
    "Store",
    "ValidationReport",
    "validate_jsonl",
]
