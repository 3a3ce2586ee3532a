"""The DuckDB span exporter: GenAI spans to spool files, spool files to the DuckDB store."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from finetuner_otel._errors import StoreError
from finetuner_otel._settings import Settings
from finetuner_otel.store._rows import is_genai_span, span_to_row
from finetuner_otel.store._spool import ingest, write_spool

logger = logging.getLogger("finetuner_otel.exporters")


class DuckDBSpanExporter(SpanExporter):
    """Exports GenAI spans (those with ``gen_ai.operation.name``) into a finetuner DuckDB store.

    Other spans are ignored. ``export`` writes each batch to a durable spool file (so a span is
    safe once ``export`` or ``force_flush`` returns) and, at most every ``ingest_interval``
    seconds, moves the spool into the store if no other process holds it. ``force_flush`` and
    ``shutdown`` ingest whatever is left, waiting up to their timeout for the store.

    With no arguments (as ``opentelemetry-instrument`` builds it) the settings come from
    ``FINETUNER_DB``, ``FINETUNER_SPOOL_DIR`` and ``FINETUNER_INGEST_INTERVAL``.
    """

    def __init__(
        self,
        db: str | os.PathLike[str] | None = None,
        *,
        spool_dir: str | os.PathLike[str] | None = None,
        ingest_interval: float | None = None,
    ) -> None:
        self._settings = Settings.load(db, spool_dir=spool_dir, ingest_interval=ingest_interval)
        self._lock = threading.Lock()
        self._last_ingest = time.monotonic()
        self._shutdown = False
        self._spans_dropped = 0

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def spans_dropped(self) -> int:
        """GenAI spans that could not be written (the reason was logged at the time)."""
        return self._spans_dropped

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            logger.warning(
                "finetuner-otel: export() after shutdown(); %d spans dropped", len(spans)
            )
            return SpanExportResult.FAILURE
        rows = []
        for span in spans:
            if not is_genai_span(span):
                continue
            try:
                rows.append(span_to_row(span))
            except Exception:
                self._spans_dropped += 1
                logger.exception("finetuner-otel: could not convert span %s; skipped", span.name)
        try:
            with self._lock:
                write_spool(self._settings.spool_dir, rows)
        except Exception:
            self._spans_dropped += len(rows)
            logger.exception(
                "finetuner-otel: could not spool %d spans to %s",
                len(rows),
                self._settings.spool_dir,
            )
            return SpanExportResult.FAILURE
        if time.monotonic() - self._last_ingest >= self._settings.ingest_interval:
            self._ingest(wait=0.0)
        return SpanExportResult.SUCCESS

    def _ingest(self, wait: float) -> bool:
        """Move the spool into the store; False if the store stayed busy (the spool is kept)."""
        self._last_ingest = time.monotonic()
        try:
            ingest(self._settings.db_path, self._settings.spool_dir, wait=wait)
            return True
        except StoreError as exc:
            log = logger.debug if wait == 0 else logger.warning
            log("finetuner-otel: spool kept for a later ingest: %s", exc)
        except Exception:
            logger.exception("finetuner-otel: ingest into %s failed", self._settings.db_path)
        return False

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Every exported span is already durable in the spool; also try to ingest it now."""
        if not self._shutdown:
            self._ingest(wait=timeout_millis / 1000)
        return True

    def shutdown(self) -> None:
        if self._shutdown:
            logger.warning("finetuner-otel: exporter already shut down")
            return
        self._shutdown = True
        self._ingest(wait=5.0)
