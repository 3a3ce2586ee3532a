"""``opentelemetry-instrument`` support: a distro and configurator for zero-code capture.

Installing finetuner-otel never changes what the launcher does for an app that already has a
distro (``opentelemetry-distro``, a vendor's): when another one is installed, ours hands every
step to it, whichever of the two the launcher happens to load first, so its exporters (OTLP,
say), metrics and logs stay exactly as they were. The store then joins with one setting::

    OTEL_TRACES_EXPORTER=otlp,finetuner_duckdb opentelemetry-instrument python app.py

Only where no other distro is installed are ours the defaults: ``finetuner_duckdb`` becomes the
traces exporter, and the metrics and logs exporters are off unless they are set
(``OTEL_*_EXPORTER`` variables and ``--*_exporter`` flags always win). ``OTEL_PYTHON_DISTRO`` and
``OTEL_PYTHON_CONFIGURATOR`` choose one explicitly, as the launcher documents.
``finetuner doctor`` says which distro the launcher will use and why (``launcher_plan``).
"""

from __future__ import annotations

import os
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.environment_variables import (
    OTEL_LOGS_EXPORTER,
    OTEL_METRICS_EXPORTER,
    OTEL_TRACES_EXPORTER,
)
from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.instrumentation.environment_variables import (
    OTEL_PYTHON_CONFIGURATOR,
    OTEL_PYTHON_DISTRO,
)
from opentelemetry.sdk._configuration import _OTelSDKConfigurator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

if TYPE_CHECKING:
    from .exporters import DuckDBSpanProcessor

NAME = "finetuner"
EXPORTER = "finetuner_duckdb"


def _other(group: str, chosen_by: str) -> EntryPoint | None:
    """The entry point of another package's distro (or configurator) the launcher would use
    if ours were not installed: the one the setting names, else the first one found."""
    chosen = os.environ.get(chosen_by)
    if chosen == NAME:
        return None
    for entry_point in entry_points(group=group):
        if entry_point.name != NAME and chosen in (None, entry_point.name):
            return entry_point
    return None


def launcher_plan() -> dict[str, Any]:
    """What ``opentelemetry-instrument`` will do in this environment, and why."""
    other = _other("opentelemetry_distro", OTEL_PYTHON_DISTRO)
    exporters = _traces_exporters()
    if other is not None:
        joined = EXPORTER in exporters
        why = (
            f"another distro ({other.name}: {other.value}) is installed, so its settings apply "
            f"unchanged; the store "
            + (
                "is among OTEL_TRACES_EXPORTER"
                if joined
                else f"is not used: set OTEL_TRACES_EXPORTER=otlp,{EXPORTER} (its exporter "
                f"and ours) to add it"
            )
        )
        return {"distro": other.name, "store": joined, "why": why}
    stored = not exporters or EXPORTER in exporters
    why = (
        f"no other distro is installed: finetuner's is used, and traces go to "
        f"{', '.join(exporters) if exporters else EXPORTER + ' (the default)'}"
    )
    return {"distro": NAME, "store": stored, "why": why}


# The store's span processor, when our configurator set the pipeline up: the capture provider
# shares it (one exporter, one ingest helper per process).
_processor: DuckDBSpanProcessor | None = None


def _traces_exporters() -> list[str]:
    return [e.strip() for e in os.environ.get(OTEL_TRACES_EXPORTER, "").split(",") if e.strip()]


class FinetunerConfigurator(_OTelSDKConfigurator):
    """The SDK's own configurator (providers and exporters from the ``OTEL_*`` settings), or
    another installed package's configurator, run in its place.

    Ours builds the store's part itself: the SDK wraps every traces exporter in a
    BatchSpanProcessor, whose queue drops calls when its thread gets too few turns of the GIL,
    so ``finetuner_duckdb`` is left out of what the SDK sees and the provider gets our
    ``DuckDBSpanProcessor`` (no span queue) instead. Another configurator, run in ours' place,
    wraps our exporter as it wraps any other."""

    def _configure(self, **kwargs: Any) -> None:
        global _processor
        other = _other("opentelemetry_configurator", OTEL_PYTHON_CONFIGURATOR)
        if other is not None:
            other.load()().configure(**kwargs)
            return
        names = _traces_exporters()
        if EXPORTER not in names:
            super()._configure(**kwargs)  # type: ignore[no-untyped-call]
            return
        saved = os.environ[OTEL_TRACES_EXPORTER]
        os.environ[OTEL_TRACES_EXPORTER] = ",".join(n for n in names if n != EXPORTER) or "none"
        try:
            super()._configure(**kwargs)  # type: ignore[no-untyped-call]
        finally:
            os.environ[OTEL_TRACES_EXPORTER] = saved
        provider = trace.get_tracer_provider()
        if isinstance(provider, TracerProvider):  # not with OTEL_SDK_DISABLED
            from .exporters import DuckDBSpanProcessor

            _processor = DuckDBSpanProcessor()
            provider.add_span_processor(_processor)


class FinetunerDistro(BaseDistro):  # type: ignore[misc]
    """Our defaults where no other distro is installed; otherwise that distro's, step by step."""

    def _delegate(self) -> Any:
        other = _other("opentelemetry_distro", OTEL_PYTHON_DISTRO)
        if other is None:
            return None
        distro = other.load()()
        return distro if isinstance(distro, BaseDistro) else None

    def _configure(self, **kwargs: Any) -> None:
        other = self._delegate()
        if other is not None:
            other.configure(**kwargs)
            return
        os.environ.setdefault(OTEL_TRACES_EXPORTER, EXPORTER)
        os.environ.setdefault(OTEL_METRICS_EXPORTER, "none")
        os.environ.setdefault(OTEL_LOGS_EXPORTER, "none")

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        if entry_point.name == "finetuner_openai":
            capture = _capture_provider()
            if capture is not None:
                kwargs["capture_tracer_provider"] = capture
        other = self._delegate()
        if other is not None:
            other.load_instrumentor(entry_point, **kwargs)
        else:
            super().load_instrumentor(entry_point, **kwargs)
        if entry_point.name == "finetuner_openai":
            from ._shadow import start_from_environment

            start_from_environment()


def _capture_provider() -> TracerProvider | None:
    """Where our instrumentor records the calls the configured sampler drops (OTEL_TRACES_SAMPLER,
    or a parent that was not sampled): a provider that samples everything and exports only to
    the store. Only when the store is one of the configured traces exporters."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider) or EXPORTER not in _traces_exporters():
        return None
    from .exporters import DuckDBSpanProcessor

    capture = TracerProvider(sampler=ALWAYS_ON, resource=provider.resource)
    capture.add_span_processor(_processor if _processor is not None else DuckDBSpanProcessor())
    return capture
