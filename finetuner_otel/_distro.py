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

from opentelemetry.environment_variables import (
    OTEL_LOGS_EXPORTER,
    OTEL_METRICS_EXPORTER,
    OTEL_TRACES_EXPORTER,
)
from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.sdk._configuration import _OTelSDKConfigurator


class FinetunerConfigurator(_OTelSDKConfigurator):
    """The SDK's own configurator: providers and exporters from the ``OTEL_*`` settings."""


class FinetunerDistro(BaseDistro):  # type: ignore[misc]
    def _configure(self, **kwargs: Any) -> None:
        os.environ.setdefault(OTEL_TRACES_EXPORTER, "finetuner_duckdb")
        os.environ.setdefault(OTEL_METRICS_EXPORTER, "none")
        os.environ.setdefault(OTEL_LOGS_EXPORTER, "none")
