"""Span exporters of finetuner-otel (installed as ``finetuner_otel.exporters``).

``DuckDBSpanExporter`` is registered under the ``opentelemetry_traces_exporter`` entry point as
``finetuner_duckdb``, so ``opentelemetry-instrument --traces_exporter finetuner_duckdb`` uses it.

``DuckDBSpanProcessor`` spools the same spans with no span queue: each is encoded on the
thread that ends it (what ``instrument()`` sets up).
"""

from ._duckdb import DuckDBSpanExporter, DuckDBSpanProcessor

__all__ = ["DuckDBSpanExporter", "DuckDBSpanProcessor"]
