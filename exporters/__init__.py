"""Span exporters of finetuner-otel (installed as ``finetuner_otel.exporters``).

``DuckDBSpanExporter`` is registered under the ``opentelemetry_traces_exporter`` entry point as
``finetuner_duckdb``, so ``opentelemetry-instrument --traces_exporter finetuner_duckdb`` uses it.
"""

from ._duckdb import DuckDBSpanExporter

__all__ = ["DuckDBSpanExporter"]
