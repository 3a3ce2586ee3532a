"""The DuckDB store of captured calls: ``Store``, ``Dataset``, ``Example``."""

from ._dataset import Dataset, Example
from ._store import DatasetSummary, SQLResult, Store

__all__ = ["Dataset", "DatasetSummary", "Example", "SQLResult", "Store"]
