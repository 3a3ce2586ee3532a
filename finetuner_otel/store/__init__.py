"""The DuckDB store of captured calls: ``Store``, ``Dataset``, ``Example``, and validation."""

from ._dataset import Dataset, Example
from ._store import DatasetSummary, SQLResult, Store
from ._validate import Problem, Stats, ValidationReport, validate_jsonl

__all__ = [
    "Dataset",
    "DatasetSummary",
    "Example",
    "Problem",
    "SQLResult",
    "Stats",
    "Store",
    "ValidationReport",
    "validate_jsonl",
]
