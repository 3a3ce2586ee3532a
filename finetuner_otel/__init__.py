"""finetuner-otel: turn your application's own OpenAI traffic into fine-tuning datasets.

::

    import finetuner_otel, openai

    finetuner_otel.instrument()                    # ./finetuner.duckdb, or FINETUNER_DB
    client = openai.OpenAI()
    client.chat.completions.create(model=..., messages=..., dataset_name="search_classifier")
    with finetuner_otel.dataset("search_classifier"):
        client.chat.completions.create(model=..., messages=...)

    store = finetuner_otel.open_store()
    train, val = store.get_dataset("search_classifier").split(0.8, seed=0)
    train.to_jsonl("train.jsonl")

The heavy parts (DuckDB, the store) load on first use, so the instrumentation alone stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._context import dataset
from ._errors import (
    CallNotFoundError,
    ConfigurationError,
    DatasetNotFoundError,
    FinetunerError,
    SchemaError,
    StoreError,
    StoreLockedError,
)
from ._lazy import load
from ._prompt import Prompt
from .version import __version__

if TYPE_CHECKING:
    from ._setup import Instrumentation, instrument, open_store, uninstrument
    from ._shadow import Route, Shadow, route, shadow
    from .exporters import DuckDBSpanExporter
    from .instrumentation import OpenAIInstrumentor
    from .store import (
        Dataset,
        DatasetSummary,
        Example,
        Export,
        ImportResult,
        Snapshot,
        SQLResult,
        Stats,
        Store,
        ValidationReport,
        validate_jsonl,
    )

_LAZY = {
    "Instrumentation": "._setup",
    "instrument": "._setup",
    "open_store": "._setup",
    "uninstrument": "._setup",
    "Route": "._shadow",
    "Shadow": "._shadow",
    "route": "._shadow",
    "shadow": "._shadow",
    "DuckDBSpanExporter": ".exporters",
    "OpenAIInstrumentor": ".instrumentation",
    "Dataset": ".store",
    "DatasetSummary": ".store",
    "Example": ".store",
    "Export": ".store",
    "ImportResult": ".store",
    "Snapshot": ".store",
    "SQLResult": ".store",
    "Store": ".store",
    "Stats": ".store",
    "ValidationReport": ".store",
    "validate_jsonl": ".store",
}

__all__ = [
    "CallNotFoundError",
    "ConfigurationError",
    "Dataset",
    "DatasetNotFoundError",
    "DatasetSummary",
    "DuckDBSpanExporter",
    "Example",
    "Export",
    "FinetunerError",
    "ImportResult",
    "Instrumentation",
    "OpenAIInstrumentor",
    "Prompt",
    "Route",
    "SQLResult",
    "SchemaError",
    "Shadow",
    "Snapshot",
    "Stats",
    "Store",
    "StoreError",
    "StoreLockedError",
    "ValidationReport",
    "__version__",
    "dataset",
    "instrument",
    "open_store",
    "route",
    "shadow",
    "uninstrument",
    "validate_jsonl",
]


def __getattr__(name: str) -> Any:
    return load(__name__, _LAZY, name, globals())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
