"""``instrument()``: the one-line set-up of capture into a DuckDB store."""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from . import _semconv as sc
from ._context import current_dataset, current_purpose
from ._errors import ConfigurationError
from ._redact import Redactor, RedactSpec, make_redactor
from ._settings import Settings
from .exporters import DuckDBSpanExporter
from .instrumentation import OpenAIInstrumentor

if TYPE_CHECKING:
    from .store import Store

logger = logging.getLogger("finetuner_otel")

_lock = threading.Lock()
_active: Instrumentation | None = None


class GenAISpanProcessor(SpanProcessor):
    """Spools GenAI spans (and only those) into the store, with no span queue.

    Added to an application's own TracerProvider it ignores every other span at the cost of one
    dict lookup, and after ``shutdown`` it goes quiet (providers cannot remove a processor).
    Each GenAI span is encoded on the thread that ends it (``DuckDBSpanExporter.add``), so no
    burst of calls can grow a queue or drop calls from it while a background thread waits for
    its turn: the app's memory for spans not yet written is at most the exporter's CHUNK_BYTES.

    Other instrumentations' GenAI spans (a framework's, the contrib OpenAI instrumentation's)
    get the dataset and purpose our own spans would: the ``dataset(...)`` / ``purpose(...)``
    scope they were started in, else ``default_dataset``. The scope is read when the span
    starts (it is gone by the time it ends) and kept beside the span, not on it: the app's own
    exporters see its spans unchanged; only the copy handed to the store carries our tags.
    """

    # Spans started in a scope and not yet ended; a bound for spans that never end.
    _MAX_PENDING = 32_768

    def __init__(self, exporter: DuckDBSpanExporter, default_dataset: str = "default") -> None:
        self.exporter = exporter
        self.default_dataset = default_dataset
        self._active = True
        self._scoped: dict[int, tuple[str | None, str | None]] = {}

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if not self._active:
            return
        scope = span.instrumentation_scope
        if scope is not None and scope.name == sc.OUR_SCOPE:
            return  # ours carry their dataset already
        dataset, why = current_dataset(parent_context), current_purpose(parent_context)
        if dataset is None and why is None:
            return
        scoped = self._scoped
        if len(scoped) >= self._MAX_PENDING:
            del scoped[next(iter(scoped))]
        scoped[span.context.span_id] = (dataset, why)

    def on_end(self, span: ReadableSpan) -> None:
        try:
            scoped = self._scoped.pop(span.context.span_id, None) if self._scoped else None
            attrs = span.attributes
            if not (self._active and attrs and sc.OPERATION_NAME in attrs):
                return
            scope = span.instrumentation_scope
            if (scope is None or scope.name != sc.OUR_SCOPE) and sc.DATASET not in attrs:
                span = self._tagged(span, scoped)
            self.exporter.add(span)
        except Exception:  # the SDK does not catch it: it would reach the app's own call
            logger.exception("finetuner-otel: a span could not be recorded")

    def _tagged(
        self, span: ReadableSpan, scoped: tuple[str | None, str | None] | None
    ) -> ReadableSpan:
        """A copy of another instrumentation's span with our dataset (and purpose) added."""
        dataset, why = scoped if scoped is not None else (None, None)
        extra: dict[str, Any] = {sc.DATASET: dataset or self.default_dataset}
        if why is not None and sc.PURPOSE not in (span.attributes or {}):
            extra[sc.PURPOSE] = why
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes={**(span.attributes or {}), **extra},
            events=span.events,
            links=span.links,
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if not self._active:
            return True
        return self.exporter.force_flush(timeout_millis)

    def shutdown(self) -> None:
        if self._active:
            self._active = False
            self.exporter.shutdown()


class Instrumentation:
    """What ``instrument()`` set up. ``flush()`` makes captured calls visible in the store;
    ``shutdown()`` flushes, stops capture and restores the OpenAI SDK."""

    def __init__(
        self,
        settings: Settings,
        tracer_provider: TracerProvider,
        processor: GenAISpanProcessor,
        owns_provider: bool,
    ) -> None:
        self.settings = settings
        self.tracer_provider = tracer_provider
        self.processor = processor
        self._owns_provider = owns_provider
        self._closed = False

    @property
    def db_path(self) -> os.PathLike[str]:
        return self.settings.db_path

    def flush(self, timeout: float = 30.0) -> bool:
        """Export every finished span and ingest it; True when all reached the store or spool."""
        return self.processor.force_flush(int(timeout * 1000))

    def open_store(self) -> Store:
        """The store, after a flush, so it shows every call made so far."""
        from .store import Store  # DuckDB loads here: an app that only captures never needs it

        self.flush()
        return Store(self.settings.store, spool_dir=self.settings.spool_dir)

    def shutdown(self) -> None:
        global _active
        with _lock:
            if self._closed:
                return
            self._closed = True
            if _active is self:
                _active = None
        OpenAIInstrumentor().uninstrument()
        self.processor.shutdown()
        if self._owns_provider:
            self.tracer_provider.shutdown()

    def __enter__(self) -> Instrumentation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "shut down" if self._closed else "active"
        return f"<finetuner_otel.Instrumentation {state} db={self.settings.location!r}>"


def instrument(
    db: str | os.PathLike[str] | None = None,
    *,
    default_dataset: str | None = None,
    tracer_provider: TracerProvider | None = None,
    spool_dir: str | os.PathLike[str] | None = None,
    redact: RedactSpec | None = None,
) -> Instrumentation:
    """Capture every OpenAI chat call of this process into a DuckDB store.

    ``db`` defaults to ``FINETUNER_DB``, then ``./finetuner.duckdb``. If the application already
    set an SDK TracerProvider (or passes one), our span processor is added to it, so its own
    exporters keep working and see our spans; otherwise a private provider is used and the
    global one is left alone. Calling ``instrument()`` again returns the same handle.

    ``redact`` rewrites the text of each call before anything is recorded: a function of a
    text, or a list of regular expressions and built-in names (``"email"``, ``"phone"``,
    ``"api_key"``); default ``FINETUNER_REDACT`` (built-in names, separated by commas).
    """
    global _active
    from ._shadow import shadow, shadow_from_environment

    settings = Settings.load(db, spool_dir=spool_dir, default_dataset=default_dataset)
    shadow_arguments = shadow_from_environment(os.environ)  # checked before anything is set up
    with _lock:
        if _active is not None:
            if _active.settings != settings:
                logger.warning(
                    "finetuner-otel: instrument() was already called with %s; keeping it "
                    "(call finetuner_otel.uninstrument() first to change settings)",
                    _active.settings,
                )
            return _active
        handle = _active = _set_up(settings, tracer_provider, make_redactor(redact))
    if shadow_arguments is not None:
        shadow(**shadow_arguments)
    return handle


def _set_up(
    settings: Settings, tracer_provider: TracerProvider | None, redactor: Redactor | None
) -> Instrumentation:
    """The processor on the chosen provider, the instrumentor, and the handle of both."""
    provider, owns = _choose_provider(tracer_provider)
    # The exporter redacts other instrumentations' spans with the same redactor.
    processor = GenAISpanProcessor(
        DuckDBSpanExporter(settings.store, spool_dir=settings.spool_dir, redact=redactor),
        default_dataset=settings.default_dataset,
    )
    provider.add_span_processor(processor)
    capture = None
    if not owns:
        # The app's sampler decides which of its traces are kept; the dataset must not shrink
        # with it. Calls it samples out are recorded through a provider of our own that
        # samples everything and exports only to the store.
        capture = TracerProvider(
            sampler=ALWAYS_ON, resource=provider.resource, shutdown_on_exit=False
        )
        capture.add_span_processor(processor)
    OpenAIInstrumentor().instrument(
        tracer_provider=provider,
        capture_tracer_provider=capture,
        default_dataset=settings.default_dataset,
        redact=redactor,
    )
    handle = Instrumentation(settings, provider, processor, owns)
    options = OpenAIInstrumentor().capture_options
    if options is not None:
        options.extensions.owner = handle  # routes read the shadow runs from its store
    atexit.register(handle.shutdown)
    return handle


def _choose_provider(explicit: Any) -> tuple[TracerProvider, bool]:
    if explicit is not None:
        if not isinstance(explicit, TracerProvider):
            raise ConfigurationError(
                f"tracer_provider must be an OpenTelemetry SDK TracerProvider, got "
                f"{type(explicit).__name__}"
            )
        return explicit, False
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current, False
    return TracerProvider(sampler=ALWAYS_ON, resource=Resource.create()), True


def uninstrument() -> None:
    """Undo ``instrument()``: flush what was captured and restore the OpenAI SDK."""
    with _lock:
        active = _active
    if active is not None:
        active.shutdown()
    else:
        OpenAIInstrumentor().uninstrument()


def open_store(db: str | os.PathLike[str] | None = None) -> Store:
    """The store that ``instrument()`` writes to (or ``db``, or ``FINETUNER_DB``)."""
    with _lock:
        active = _active
    if db is None and active is not None:
        active.flush()
        return active.open_store()
    from .store import Store

    return Store(db)
