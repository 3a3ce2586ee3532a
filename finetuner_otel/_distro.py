"""``opentelemetry-instrument`` support: a distro and configurator for zero-code capture.

With finetuner-otel installed, ``opentelemetry-instrument python app.py`` captures every OpenAI
call into the DuckDB store: the distro makes ``finetuner_duckdb`` the default traces exporter and
turns the metrics and logs exporters off unless they are set (``OTEL_*_EXPORTER`` variables and
``--*_exporter`` flags always win). Where another distro is installed as well, the launcher uses
the first it finds; choose with ``OTEL_PYTHON_DISTRO=finetuner`` and
``OTEL_PYTHON_CONFIGURATOR=finetuner``.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import trace
from opentelemetry.environment_variables import (
    OTEL_LOGS_EXPORTER,
    OTEL_METRICS_EXPORTER,
    OTEL_TRACES_EXPORTER,
)
from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.sdk._configuration import _OTelSDKConfigurator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON


class FinetunerConfigurator(_OTelSDKConfigurator):
    """The SDK's own configurator: providers and exporters from the ``OTEL_*`` settings."""


class FinetunerDistro(BaseDistro):  # type: ignore[misc]
    def _configure(self, **kwargs: Any) -> None:
        os.environ.setdefault(OTEL_TRACES_EXPORTER, "finetuner_duckdb")
        os.environ.setdefault(OTEL_METRICS_EXPORTER, "none")
        os.environ.setdefault(OTEL_LOGS_EXPORTER, "none")

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        if entry_point.name == "finetuner_openai":
            capture = _capture_provider()
            if capture is not None:
                kwargs["capture_tracer_provider"] = capture
        super().load_instrumentor(entry_point, **kwargs)


def _capture_provider() -> TracerProvider | None:
    """Where our instrumentor records the calls the configured sampler drops (OTEL_TRACES_SAMPLER,
    or a parent that was not sampled): a provider that samples everything and exports only to
    the store. Only when the store is one of the configured traces exporters."""
    provider = trace.get_tracer_provider()
    exporters = [e.strip() for e in os.environ.get(OTEL_TRACES_EXPORTER, "").split(",")]
    if not isinstance(provider, TracerProvider) or "finetuner_duckdb" not in exporters:
        return None
    from .exporters import DuckDBSpanExporter

    capture = TracerProvider(sampler=ALWAYS_ON, resource=provider.resource)
    capture.add_span_processor(BatchSpanProcessor(DuckDBSpanExporter()))
    return capture
