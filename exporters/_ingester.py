"""The ingest helper process, started by an exporter (``_ingest.IngestHelper``), one per exporter:

    python -m finetuner_otel.exporters._ingester --spool-dir S [--interval SECONDS]

The store is the one in its FINETUNER_DB (the app puts there the store it was given: a lake's
URL may hold a password, and a command line is anyone's to read).

It reads requests from its stdin, one a line: ``ingest`` (move the spool into the store if it
is free; no answer) and ``flush <seq> <wait>`` (ingest now, waiting up to ``wait`` seconds for
the store), answered on stdout with ``flushed <seq> <ok|busy|error> <files> <pid> <message>``.
What it logs goes there too (``log <json>``), for the app to log with its own logging. Requests
that arrive together are served by one ingest. It ends when its stdin ends: the app closed it
or died. It runs at a lower priority than the app (nice 5) and ignores SIGINT (a
Ctrl-C in the terminal is the app's to handle; the app then flushes through this helper and
closes it). Its DuckDB is started once and the store attached for each ingest
(``store.spool.keep_instance``): the store's lock is held only while it ingests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import select
import signal
import sys

from finetuner_otel._errors import StoreError
from finetuner_otel._settings import Settings
from finetuner_otel.exporters._ingest import ingest_spool
from finetuner_otel.store.spool import keep_instance, pending

logger = logging.getLogger("finetuner_otel.exporters")

NICE = 5


def _ingest(settings: Settings, wait: float) -> tuple[str, int, str]:
    """One ingest: (status, files ingested, message); never raises."""
    try:
        return "ok", ingest_spool(settings, wait), ""
    except StoreError as exc:  # locked, or stopped by the machine: the app logs it at a flush
        return "busy", 0, str(exc)
    except Exception as exc:  # a bug: said here, with its traceback, and to the app
        logger.exception("finetuner-otel: ingest into %s failed", settings.location)
        return "error", 0, f"{type(exc).__name__}: {exc}"


def serve(settings: Settings, lines: list[bytes]) -> None:
    """Answer the requests that arrived together: one ingest for them all, one more per flush
    after the first (the spool may have grown meanwhile)."""
    flushes: list[tuple[str, float]] = []
    for line in lines:
        words = line.decode(errors="replace").split()
        if len(words) == 3 and words[0] == "flush":
            try:
                flushes.append((words[1], max(0.0, float(words[2]))))
            except ValueError:
                logger.error("finetuner-otel ingest helper: bad request %r", line)
        elif words != ["ingest"]:
            logger.error("finetuner-otel ingest helper: bad request %r", line)
    if not flushes:
        _ingest(settings, 0.0)
        return
    for seq, wait in flushes:
        status, files, message = _ingest(settings, wait)
        text = " ".join(message.split())  # one line
        _write_all(f"flushed {seq} {status} {files} {os.getpid()} {text}\n".encode())


def _write_all(data: bytes) -> None:
    """An answer to the app: waited for (stdout is non-blocking, for the log records)."""
    while data:
        try:
            data = data[os.write(1, data) :]
        except BlockingIOError:
            select.select([], [1], [])


class ToApp(logging.Handler):
    """Each record to the app over stdout (``log <json>``, one line), which logs it with its own
    logging: its handlers and levels, as if ingest ran there. Never waits for the app: when the
    pipe is full (no flush reads it), the record goes to stderr instead."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            data = _log_line(record, text)
            if len(data) > select.PIPE_BUF:  # written whole or not at all only up to PIPE_BUF
                data = _log_line(record, text[:500] + " [...]")
            try:
                os.write(1, data)
            except BlockingIOError:
                sys.stderr.write(f"finetuner-otel ingest helper (pid {os.getpid()}): {text}\n")
        except BrokenPipeError:
            pass
        except Exception:
            self.handleError(record)


def _log_line(record: logging.LogRecord, text: str) -> bytes:
    fields = {"level": record.levelno, "name": record.name, "message": text}
    return b"log " + json.dumps(fields).encode() + b"\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m " + __spec__.name if __spec__ else None)
    parser.add_argument("--spool-dir", required=True, help="the spool, as the exporter resolved it")
    parser.add_argument("--log-level", type=int, default=logging.WARNING, help="the app's level")
    parser.add_argument(
        "--interval", type=float, default=None, help="the exporter's ingest interval, seconds"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(AttributeError, OSError):
        os.nice(NICE)
    os.set_blocking(1, False)
    logging.basicConfig(level=args.log_level, handlers=[ToApp()], format="%(message)s")
    settings = Settings.load(None, spool_dir=args.spool_dir, ingest_interval=args.interval)
    keep_instance()
    # Spans spooled after the app's last request (a burst, then quiet) are taken in after one
    # interval without requests, not left in the spool until the app's next span or its exit.
    idle = select.poll()
    idle.register(0, select.POLLIN)
    # poll() takes at most a C int of milliseconds (24 days): a longer interval waits forever,
    # as it means to (FINETUNER_INGEST_INTERVAL=1e9 crashed the helper with OverflowError).
    interval_ms = max(int(settings.ingest_interval * 1000), 50)
    timeout_ms = interval_ms if interval_ms < 2**31 else None
    buffer = b""
    while True:
        if not idle.poll(timeout_ms):
            if pending(settings.spool_dir):
                _ingest(settings, 0.0)
            continue
        chunk = os.read(0, 65536)
        if not chunk:  # the app closed our stdin, or died
            return 0
        *lines, buffer = (buffer + chunk).split(b"\n")
        if lines:
            try:
                serve(settings, lines)
            except BrokenPipeError:  # the app stopped reading: it is closing or gone
                return 0


if __name__ == "__main__":
    sys.exit(main())
