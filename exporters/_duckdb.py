"""The DuckDB span exporter: GenAI spans to spool files, spool files to the DuckDB store."""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from finetuner_otel import _encoded
from finetuner_otel._errors import StoreError
from finetuner_otel._redact import Redactor, RedactSpec, from_environment, make_redactor
from finetuner_otel._settings import Lake, Settings
from finetuner_otel.store.spool import fsync_dir, fsync_file, write_private, write_spool

from ._ingest import FlushOutcome, IngestHelper, ingest_mode, ingest_spool
from ._spans import is_genai_span, span_to_line

logger = logging.getLogger("finetuner_otel.exporters")

# Ingest as soon as this many spans wait in the spool, even before the interval is up: bulk loads
# of a few thousand rows are DuckDB's efficient size, and a burst then streams into the store
# while it is still being exported instead of piling up in the spool.
INGEST_BATCH_SPANS = 4096
# When the spool cannot be written (disk full, a read-only or missing directory), spans are held
# in memory, up to this many, and written with the next batch that can be; beyond it the oldest
# are dropped and counted (``spans_dropped``, and ``finetuner doctor`` once the spool is back).
MAX_HELD_SPANS = 10_000
# Held spans go back to the spool in files of at most this many characters (about bytes), so a
# disk that frees a little space takes a little of the backlog: one file of the whole backlog
# fits nowhere until all of it does (350 held spans were lost at exit with 756 KB free).
HELD_CHUNK_CHARS = 64 * 1024
# Lines that ``add`` keeps before they are written as one spool file (not fsynced then: the
# writer thread's next turn, ``force_flush`` and ``shutdown`` make them durable). A full chunk
# wakes the writer thread, so the app's thread does no file I/O (an event loop on a slow
# filesystem, NFS, would wait on it); only when that thread has fallen a chunk behind (beside
# a loop of pure-Python calls, a background thread got 4 turns of the GIL a second) does the
# calling thread write them itself. So the app never keeps more than two chunks unwritten,
# whatever share of the GIL a background thread gets: a span queue waiting on one grew to
# 16,384 spans of 7.7 KB and then dropped calls.
CHUNK_BYTES = 256 * 1024
# How long shutdown() waits for the last ingest (the thread's waited for as long as it took):
# long enough for a helper to start and move a large spool; past it the helper goes on alone.
SHUTDOWN_INGEST_SECONDS = 30.0


class DuckDBSpanExporter(SpanExporter):
    """Exports GenAI spans (those with ``gen_ai.operation.name``) into a finetuner DuckDB store.

    Other spans are ignored. ``export`` writes each batch to a durable spool file (so a span is
    safe once ``export`` or ``force_flush`` returns) and, every ``ingest_interval`` seconds or
    as soon as ``INGEST_BATCH_SPANS`` spans wait, asks for the spool to be moved into the store
    if no other process holds it. Export never waits for the database, so a slow or locked store
    cannot back up the span queue. ``force_flush`` and ``shutdown`` ingest whatever is left,
    waiting up to their timeout for the store.

    ``ingest="process"`` (``FINETUNER_INGEST``, the default) moves the spool in a helper
    process of this exporter (started on the first ingest, ended by ``shutdown`` or when this
    process ends), so DuckDB's memory and the ingest's CPU stay out of the app;
    ``ingest="thread"`` moves it on a background thread of this process, as does an exporter
    whose helper cannot start or keeps dying (logged once).

    ``add(span)`` is the queue-less path (``DuckDBSpanProcessor``, and what ``instrument()``
    sets up): the span is encoded on the thread that ended it, and each CHUNK_BYTES of lines
    is written as one spool file by the exporter's writer thread (by the calling thread only
    when that one has fallen a chunk behind), so no span waits in memory for a background
    thread beyond two chunks; the rest is written every ``ingest_interval``.

    ``redact`` (what ``instrument(redact=...)`` takes, or ``FINETUNER_REDACT`` when not given)
    is applied to every content and string attribute of spans of other instrumentations before
    they are written; spans of ours were redacted when they were recorded.

    With no arguments (as ``opentelemetry-instrument`` builds it) the settings come from
    ``FINETUNER_DB``, ``FINETUNER_SPOOL_DIR``, ``FINETUNER_INGEST_INTERVAL``,
    ``FINETUNER_INGEST`` and ``FINETUNER_REDACT``.
    """

    def __init__(
        self,
        db: str | os.PathLike[str] | Lake | None = None,
        *,
        spool_dir: str | os.PathLike[str] | None = None,
        ingest_interval: float | None = None,
        max_held_spans: int = MAX_HELD_SPANS,
        redact: RedactSpec | Redactor | None = None,
        ingest: str | None = None,
    ) -> None:
        self._settings = Settings.load(db, spool_dir=spool_dir, ingest_interval=ingest_interval)
        _encoded.enable()  # our instrumentation's message texts are not parsed back here
        # The store as given, for the helper's own Settings.load (a lake by its URL).
        given = db.url if isinstance(db, Lake) else None if db is None else os.fspath(db)
        self._helper: IngestHelper | None = (
            IngestHelper(self._settings, given) if ingest_mode(ingest) == "process" else None
        )
        self._redactor: Redactor | None = (
            redact
            if isinstance(redact, Redactor)
            else make_redactor(redact)
            if redact is not None
            else from_environment(os.environ.get("FINETUNER_REDACT"))
        )
        self._last_ingest = time.monotonic()
        self._spooled_since_ingest = 0
        self._shutdown = False
        self._spans_dropped = 0
        self._dropped_recorded = 0
        self._held: collections.deque[str] = collections.deque()
        self._max_held = max_held_spans
        self._spool_failing = False
        self._init_threading()
        self_ref = weakref.ref(self)

        def after_fork_in_child() -> None:
            exporter = self_ref()
            if exporter is not None:
                exporter._init_threading()
                if exporter._helper is not None:
                    exporter._helper.after_fork_in_child()

        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=after_fork_in_child)

    def _init_threading(self) -> None:
        """Fresh locks and no ingest thread (also in a forked child, where the parent's thread
        does not exist and its locks may have been held at the fork)."""
        self._spool_lock = threading.Lock()
        self._ingest_lock = threading.Lock()
        self._wake = threading.Condition()
        self._ingest_requested = False
        self._stopping = False
        self._ingester: threading.Thread | None = None
        self._ingester_started = False
        # add()'s lines not yet written, their size, and spool files written without an fsync
        # (the parent's are its own to sync: a forked child starts with none).
        self._buffer_lock = threading.Lock()
        self._due_lock = threading.Lock()
        self._buffer: list[str] = []
        self._buffered = 0
        self._unsynced: list[Path] = []
        self._writer: threading.Thread | None = None
        self._writer_stop = threading.Event()
        self._chunk_ready = threading.Event()  # add() has a full chunk for the writer thread

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def ingest_pid(self) -> int | None:
        """The process id of the ingest helper now running; None before the first ingest and
        when the spool is ingested on a thread of this process."""
        helper = self._helper
        return helper.pid if helper is not None else None

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
        lines = []
        for span in spans:
            if not is_genai_span(span):
                continue
            try:
                lines.append(span_to_line(span, self._redactor))
            except Exception:
                self._spans_dropped += 1
                logger.exception("finetuner-otel: could not convert span %s; skipped", span.name)
        if not self._written(lines, sync=True):
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def add(self, span: ReadableSpan) -> None:
        """Spool one finished span from the thread that ended it, with no queue: encoded here;
        a full CHUNK_BYTES of lines wakes the writer thread, and a second one is written here
        (the rest by the writer thread within ``ingest_interval``, or by ``force_flush``).
        Never raises."""
        try:
            if self._shutdown or not is_genai_span(span):
                return
            line = span_to_line(span, self._redactor)
        except Exception:
            self._spans_dropped += 1
            logger.exception("finetuner-otel: could not convert span %s; skipped", span.name)
            return
        try:
            with self._buffer_lock:
                self._buffer.append(line)
                self._buffered += len(line)
                if self._writer is None:
                    self._start_writer()
                if self._buffered < CHUNK_BYTES:
                    return
                if self._buffered < 2 * CHUNK_BYTES:
                    if not self._chunk_ready.is_set():
                        self._chunk_ready.set()  # the writer thread takes it
                    return
                lines = self._take_buffer()  # that thread is a chunk behind: written here
            self._written(lines, sync=False, ask=False)  # a running helper asked, none started
        except Exception:  # a thread that cannot start, a bug of ours: never the app's problem
            logger.exception("finetuner-otel: spans could not be spooled")

    def _take_buffer(self) -> list[str]:
        """add()'s lines, taken out (``self._buffer_lock`` held)."""
        lines, self._buffer, self._buffered = self._buffer, [], 0
        return lines

    def _write_buffer(self, *, sync: bool = True) -> bool:
        """Write add()'s lines and (``sync``) make every spool file written so far durable;
        False when some are held in memory because the spool cannot be written."""
        with self._buffer_lock:
            lines = self._take_buffer()
            self._chunk_ready.clear()
        written = self._written(lines, sync=False)
        if sync:
            self._sync()
        return written

    def _start_writer(self) -> None:
        """The thread that writes add()'s full chunks, and every ``ingest_interval`` what is
        left and fsyncs (``_buffer_lock`` held)."""
        self._writer = threading.Thread(
            target=self._writer_loop, name="finetuner-otel-spool", daemon=True
        )
        self._writer.start()

    def _writer_loop(self) -> None:
        interval = max(self._settings.ingest_interval, 0.05)
        due = time.monotonic() + interval
        while True:
            left = min(max(due - time.monotonic(), 0.0), threading.TIMEOUT_MAX)
            chunk = self._chunk_ready.wait(left)
            if self._writer_stop.is_set():
                return
            try:
                if chunk and time.monotonic() < due:
                    self._write_buffer(sync=False)  # a full chunk: fsynced at the next turn
                else:
                    self._write_buffer()
                    due = time.monotonic() + interval
            except Exception:  # a bug of ours: logged, and the next turn tries again
                logger.exception("finetuner-otel: the spool writer failed; retrying")

    def _written(self, lines: list[str], *, sync: bool, ask: bool = True) -> bool:
        """Spool ``lines`` (durable on return when ``sync``) and, with ``ask``, start the
        ingester and ask it for an ingest when one is due; False when some are held in memory
        because the spool cannot be written. Without ``ask`` (a thread of the app's), no
        helper is started: a running one is only asked for a full batch (one write to its
        pipe, which never blocks), so a burst streams into the store while it is spooled."""
        written = self._spool(lines, sync=sync) if lines else 0
        with self._due_lock:
            if written is not None:
                self._spooled_since_ingest += written
            if not self._spooled_since_ingest:
                return written is not None
            if not ask:
                if self._ingester_started and self._spooled_since_ingest >= INGEST_BATCH_SPANS:
                    self._request_ingest()
                return written is not None
            if not self._ingester_started:
                self._start_ingester()
            if (
                self._spooled_since_ingest >= INGEST_BATCH_SPANS
                or time.monotonic() - self._last_ingest >= self._settings.ingest_interval
            ):
                self._request_ingest()
        return written is not None

    def _sync(self) -> None:
        """Make the spool files written without an fsync durable, and their names."""
        with self._spool_lock:
            paths, self._unsynced = self._unsynced, []
        if not paths:
            return
        try:
            for path in paths:
                fsync_file(path)  # False: ingested meanwhile
            fsync_dir(self._settings.spool_dir)
        except OSError as exc:
            logger.warning(
                "finetuner-otel: could not sync the spool %s: %s", self._settings.spool_dir, exc
            )

    def _spool(self, lines: list[str], *, sync: bool = True) -> int | None:
        """Write the held lines and ``lines`` to the spool; the number written, or None when
        some could not be (they are then held, up to the bound, and written later)."""
        with self._spool_lock:
            if not self._held:
                try:
                    path = write_spool(self._settings.spool_dir, lines, sync=sync)
                except Exception as exc:
                    self._log_failing(exc)
                else:
                    if path is not None and not sync:
                        self._unsynced.append(path)
                    self._record_dropped()
                    return len(lines)
            # As much of the backlog as fits now, in files small enough to fit a little space.
            self._held.extend(lines)
            self._trim_held()
            written = self._write_held()
            if self._held:
                return None
            if self._spool_failing:
                self._spool_failing = False
                logger.warning(
                    "finetuner-otel: the spool %s is writable again; held spans written, %d "
                    "dropped in all",
                    self._settings.spool_dir,
                    self._spans_dropped,
                )
            self._record_dropped()
            return written

    def _write_held(self) -> int:
        """Write held lines, oldest first, in files of about HELD_CHUNK_CHARS, until one
        cannot be written; the number written."""
        held = self._held
        written = 0
        while held:
            size = count = 0
            for line in held:
                if count and size + len(line) > HELD_CHUNK_CHARS:
                    break
                size += len(line)
                count += 1
            chunk = list(itertools.islice(held, count))
            try:
                write_spool(self._settings.spool_dir, chunk)
            except Exception as exc:
                self._log_failing(exc)
                return written
            for _ in range(count):
                held.popleft()
            written += count
        return written

    def _trim_held(self) -> None:
        excess = len(self._held) - self._max_held
        for _ in range(max(excess, 0)):
            self._held.popleft()
        if excess > 0:
            self._spans_dropped += excess

    def _log_failing(self, exc: Exception) -> None:
        if not self._spool_failing:  # once per outage, not once per batch
            self._spool_failing = True
            logger.error(
                "finetuner-otel: cannot write the spool %s (%s: %s); holding spans in "
                "memory (up to %d) until it can be written",
                self._settings.spool_dir,
                type(exc).__name__,
                exc,
                self._max_held,
            )

    def _record_dropped(self) -> None:
        """Leave the count of dropped spans beside the spool, for ``finetuner doctor``."""
        if self._spans_dropped == self._dropped_recorded:
            return
        path = self._settings.spool_dir / f"dropped-{os.getpid()}-{id(self):x}.json"
        data = json.dumps({"pid": os.getpid(), "spans_dropped": self._spans_dropped})
        try:
            write_private(path, data.encode())
            self._dropped_recorded = self._spans_dropped
        except OSError:
            pass

    @property
    def spans_held(self) -> int:
        """GenAI spans waiting in memory for the spool to be writable again."""
        return len(self._held)

    def _start_ingester(self) -> None:
        """The helper (or the thread) running from the first spooled batch on, asked nothing
        yet: it takes in what the spool holds after each quiet interval, so the last spans of a
        burst reach the store without a flush."""
        self._ingester_started = True
        helper = self._helper
        if helper is not None and self._in_helper() and helper.start():
            return
        with self._wake:
            self._thread_running()

    def _request_ingest(self) -> None:
        self._last_ingest = time.monotonic()
        self._spooled_since_ingest = 0
        if self._in_helper() and self._asked_helper():
            return
        with self._wake:
            self._ingest_requested = True
            self._thread_running()
            self._wake.notify()

    def _thread_running(self) -> None:
        """The ingest thread started if it is not running (``self._wake`` held)."""
        if self._ingester is None or not self._ingester.is_alive():
            self._ingester = threading.Thread(
                target=self._ingest_loop, name="finetuner-otel-ingest", daemon=True
            )
            self._ingester.start()

    def _ingest_loop(self) -> None:
        wake = self._wake
        interval = max(self._settings.ingest_interval, 0.05)
        while True:
            with wake:
                while not self._ingest_requested and not self._stopping:
                    if not wake.wait(interval) and self._spooled_since_ingest:
                        # Spooled after the last request, and nothing since (a burst, then
                        # quiet): taken in now, not when the next span comes or at exit.
                        self._spooled_since_ingest = 0
                        self._last_ingest = time.monotonic()
                        break
                if self._stopping:
                    return
                self._ingest_requested = False
            self._ingest(wait=0.0)

    def _in_helper(self) -> bool:
        """Whether the helper process ingests (False once it proved unusable: logged once)."""
        helper = self._helper
        if helper is None:
            return False
        if helper.usable:
            return True
        helper.close(0.0)
        self._helper = None
        return False

    def _ingest(self, wait: float, timeout: float | None = None) -> bool:
        """Move the spool into the store, within ``timeout`` seconds in the helper (``wait``
        by default); False if the store stayed busy or it failed (the spool is kept)."""
        if self._in_helper():
            outcome = self._flushed_by_helper(wait, wait if timeout is None else timeout)
            if outcome is not None:
                return self._helper_ingested(outcome, wait)
            if self._in_helper():  # it died meanwhile: this once, here; restarted next time
                logger.info("finetuner-otel: ingesting here while the helper restarts")
        try:
            with self._ingest_lock:
                ingest_spool(self._settings, wait)
            return True
        except StoreError as exc:
            log = logger.debug if wait == 0 else logger.warning
            log("finetuner-otel: spool kept for a later ingest: %s", exc)
        except Exception:
            logger.exception("finetuner-otel: ingest into %s failed", self._settings.location)
        return False

    def _asked_helper(self) -> bool:
        """Ask the helper for an ingest; False when the thread must do it (never raises)."""
        try:
            return self._helper is not None and self._helper.request()
        except Exception:  # a bug of ours: never the app's problem, and the thread still works
            logger.exception("finetuner-otel: the ingest helper could not be asked to ingest")
            return False

    def _flushed_by_helper(self, wait: float, timeout: float) -> FlushOutcome | None:
        try:
            return None if self._helper is None else self._helper.flush(wait, timeout)
        except Exception:
            logger.exception("finetuner-otel: the ingest helper could not be asked to flush")
            return None

    def _helper_ingested(self, outcome: FlushOutcome, wait: float) -> bool:
        if outcome.status == "ok":
            logger.debug(
                "finetuner-otel: the ingest helper (pid %d) moved %d spool files into %s",
                outcome.pid,
                outcome.files,
                self._settings.location,
            )
            return True
        if outcome.status == "busy":
            log = logger.debug if wait == 0 else logger.warning
            log("finetuner-otel: spool kept for a later ingest: %s", outcome.message)
        elif outcome.status == "timeout":
            logger.warning(
                "finetuner-otel: the ingest helper (pid %d) gave no answer in time (%s); the "
                "spool is kept and the helper goes on ingesting it",
                outcome.pid,
                outcome.message,
            )
        else:
            logger.error(
                "finetuner-otel: ingest into %s failed in the ingest helper (pid %d): %s",
                self._settings.location,
                outcome.pid,
                outcome.message,
            )
        return False

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Every exported (and added) span is durable in the spool: False while some are held
        in memory because it cannot be written (as many as fit are written now); also try to
        ingest."""
        if self._shutdown:
            return not self._held
        durable = self._write_buffer() and (not self._held or self._spool([]) is not None)
        self._ingest(wait=timeout_millis / 1000)  # what is in the spool, held spans or not
        return durable

    def shutdown(self) -> None:
        if self._shutdown:
            logger.warning("finetuner-otel: exporter already shut down")
            return
        self._shutdown = True
        with self._wake:
            self._stopping = True
            self._wake.notify()
            ingester = self._ingester
        self._writer_stop.set()
        self._chunk_ready.set()
        for thread in (ingester, self._writer):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=5.0)
        self._write_buffer()
        if self._held and self._spool([]) is None:
            self._spans_dropped += len(self._held)
            logger.error(
                "finetuner-otel: the spool %s could not be written before exit; %d spans lost",
                self._settings.spool_dir,
                len(self._held),
            )
            self._held.clear()
        self._ingest(wait=5.0, timeout=SHUTDOWN_INGEST_SECONDS)
        if self._helper is not None:
            self._helper.close()


class DuckDBSpanProcessor(SpanProcessor):
    """A span processor that spools GenAI spans into a finetuner store with no span queue.

    Each GenAI span is encoded on the thread that ends it, and each ``CHUNK_BYTES`` of them is
    written as one spool file by the exporter's writer thread, or by the calling thread when
    that one is a chunk behind (``DuckDBSpanExporter.add``), so the app's memory for spans not
    yet written is bounded by two chunks, and no span is dropped for a background thread that
    did not get to run: under a BatchSpanProcessor, an app making calls as fast as the
    CPU allows filled the queue and lost calls. It costs the calling thread the encoding (a
    few tens of µs a call) that a BatchSpanProcessor's thread would spend in the same process.
    Without an ``exporter`` it makes one from the ``FINETUNER_*`` settings.
    """

    def __init__(self, exporter: DuckDBSpanExporter | None = None) -> None:
        self.exporter = exporter if exporter is not None else DuckDBSpanExporter()
        self._shut_down = False

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        self.exporter.add(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)

    def shutdown(self) -> None:
        if not self._shut_down:  # a provider's own shutdown at exit comes after the app's
            self._shut_down = True
            self.exporter.shutdown()
