"""Where the spool is ingested: in a helper process (the default) or on a thread of the app.

``ingest_spool`` is the one call of the store's ingest, made by the exporter's thread and by the
helper process (``_ingester``) alike. ``IngestHelper`` is the app's side of that process: it
starts it on the first request (``python -m finetuner_otel.exporters._ingester``), asks it to
ingest over its stdin (``ingest``: no answer; ``flush <seq> <wait>``: one answer line on its
stdout) and closes its stdin to end it. The helper ends when its stdin does, so it never
outlives the app, even one killed by SIGKILL. DuckDB's memory and the ingest's CPU are then the
helper's, not the app's (after 100,000 calls the app's peak RSS was 242 MB with the thread).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from finetuner_otel._errors import ConfigurationError
from finetuner_otel._settings import Settings
from finetuner_otel.store.spool import ingest

logger = logging.getLogger("finetuner_otel.exporters")

INGEST_MODES = ("process", "thread")
HELPER_MODULE = "finetuner_otel.exporters._ingester"
# Deaths (a helper that could not start, or that ended while the app still needed it) after
# which the exporter ingests on its own thread instead, for the rest of its life.
MAX_HELPER_DEATHS = 3
# How long closing waits for the helper to end (it is idle after the last flush's answer).
EXIT_WAIT_SECONDS = 5.0
_AUTO_INSTRUMENTATION = os.path.join("opentelemetry", "instrumentation", "auto_instrumentation")
# Where the finetuner_otel package lies, put first on the helper's path: the app may have found
# it through its script's folder or its working directory, which the helper does not have.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def ingest_spool(settings: Settings, wait: float) -> int:
    """Move the spool of ``settings`` into its store: the one place that calls the store's
    ingest (StoreError when the store stays busy for ``wait`` seconds or the machine stops it)."""
    return ingest(settings.store, settings.spool_dir, wait=wait)


def ingest_mode(value: str | None, environ: Mapping[str, str] | None = None) -> str:
    """``value``, else ``FINETUNER_INGEST``, else ``process``; checked."""
    env = os.environ if environ is None else environ
    mode = value if value is not None else env.get("FINETUNER_INGEST") or "process"
    if mode not in INGEST_MODES:
        source = "ingest=" if value is not None else "FINETUNER_INGEST"
        raise ConfigurationError(
            f"{source} must be 'process' (ingest in a helper process, the default) or 'thread' "
            f"(ingest on a thread of the app), got {mode!r}"
        )
    return mode


def helper_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The app's environment for the helper, less what would instrument it: under
    ``opentelemetry-instrument`` the auto-instrumentation's sitecustomize is on PYTHONPATH and
    the OTEL_* settings would build the helper an exporter of its own, and so a helper of its
    own. The package's own folder goes first on its path."""
    env = dict(environ)
    kept = [
        entry
        for entry in env.get("PYTHONPATH", "").split(os.pathsep)
        if entry and not os.path.normpath(entry).endswith(_AUTO_INSTRUMENTATION)
    ]
    env["PYTHONPATH"] = os.pathsep.join([_PACKAGE_ROOT, *kept])
    env.update(
        OTEL_SDK_DISABLED="true",
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="*",
    )
    return env


@dataclass(frozen=True)
class FlushOutcome:
    """The helper's answer to a flush: ``ok``, ``busy`` (a StoreError: the store stayed locked
    or the machine stopped the ingest; the spool is kept), ``error`` (a bug: the helper logged
    its traceback), or ``timeout`` (no answer in time: the helper goes on, the spool is kept)."""

    status: str
    files: int
    pid: int
    message: str


class _Child:
    """One helper process and the two pipe ends the app holds (plain descriptors, so that a
    forked child of the app can close its copies without touching the process)."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: str) -> None:
        to_child, to_app = os.pipe(), os.pipe()
        try:
            self.proc = subprocess.Popen(
                command, stdin=to_child[0], stdout=to_app[1], env=env, cwd=cwd, close_fds=True
            )
        except BaseException:
            for fd in (*to_child, *to_app):
                os.close(fd)
            raise
        os.close(to_child[0])
        os.close(to_app[1])
        self.requests, self.answers = to_child[1], to_app[0]
        os.set_blocking(self.requests, False)
        self.buffer = b""
        self.closed = False

    def close(self, wait: float) -> None:
        """End the helper: its stdin closes, it ends once idle; reaped here or on a thread."""
        if self.closed:
            return
        self.closed = True
        for fd in (self.requests, self.answers):
            with contextlib.suppress(OSError):
                os.close(fd)
        try:
            self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:  # still ingesting: it ends when done
            threading.Thread(target=self.proc.wait, name="finetuner-otel-reap", daemon=True).start()

    def forget(self) -> None:
        """In a forked child of the app: close the copies of the pipes, leave the process."""
        self.closed = True
        for fd in (self.requests, self.answers):
            with contextlib.suppress(OSError):
                os.close(fd)
        _NOT_OURS.append(self.proc)  # never collected here, so never waited for or warned of


def _relog(line: bytes, pid: int) -> None:
    """Log here a record the helper sent (``log <json>``), under its logger's name and level."""
    try:
        fields = json.loads(line[4:])
        logging.getLogger(str(fields["name"])).log(
            int(fields["level"]), "%s (in the ingest helper, pid %d)", fields["message"], pid
        )
    except (ValueError, KeyError, TypeError):
        logger.warning("finetuner-otel: the ingest helper (pid %d) said %r", pid, line[:200])


def _ready(fd: int, event: int, timeout: float) -> bool:
    """Whether ``fd`` is ready for ``event`` within ``timeout`` seconds (poll, not select: an
    app may hold more than select's 1,024 descriptors)."""
    poller = select.poll()
    poller.register(fd, event)
    return bool(poller.poll(max(0, int(timeout * 1000) + 1)))


# Popen objects inherited through fork: the process is the parent's to wait for.
_NOT_OURS: list[subprocess.Popen[bytes]] = []


class IngestHelper:
    """The app's side of one helper process, for one exporter's store and spool. Never raises:
    when the helper cannot start, or has died ``MAX_HELPER_DEATHS`` times, ``usable`` turns
    False (logged once) and the exporter ingests on its own thread."""

    def __init__(self, settings: Settings, db: str | None = None) -> None:
        """``db`` is the store as the user gave it (None: ``FINETUNER_DB`` or the default,
        which the helper reads from the same environment); the helper resolves it with
        ``Settings.load`` in this working directory, as the exporter did."""
        self._command = [
            sys.executable,
            "-m",
            HELPER_MODULE,
            "--spool-dir",
            str(settings.spool_dir),
        ]
        # The store goes in the helper's environment, not its command line: a lake's URL may
        # hold a password, and anyone on the machine can read a command line.
        self._store = db
        self._interval = settings.ingest_interval
        self._cwd = os.getcwd()
        self._db = settings.location
        self._child: _Child | None = None
        self._finalizer: weakref.finalize[[float], IngestHelper] | None = None
        self._deaths = 0
        self._seq = 0
        self._lock = threading.Lock()  # held by a flush for as long as it waits for its answer
        self._pending = False

    @property
    def usable(self) -> bool:
        return self._deaths < MAX_HELPER_DEATHS

    @property
    def pid(self) -> int | None:
        """The running helper's process id (None before the first request)."""
        child = self._child
        return None if child is None or child.closed else child.proc.pid

    def request(self) -> bool:
        """Ask for an ingest, without waiting (export calls it: it never waits for a flush);
        False when the helper is not usable."""
        if not self._lock.acquire(blocking=False):  # a flush holds the helper: asked after it
            self._pending = True
            return True
        try:
            return self._request()
        finally:
            self._lock.release()

    def start(self) -> bool:
        """The helper running, asked nothing (it takes in the spool after a quiet interval);
        False when it is not usable. Never waits for a flush."""
        if not self._lock.acquire(blocking=False):  # a flush holds it: it is running
            return True
        try:
            return self._running() is not None
        finally:
            self._lock.release()

    def _request(self) -> bool:
        self._pending = False
        for _ in range(2):  # once more with a new helper, if this one has just ended
            child = self._running()
            if child is None:
                return False
            try:
                os.write(child.requests, b"ingest\n")
            except BlockingIOError:  # the pipe is full of requests: one more changes nothing
                pass
            except OSError as exc:
                self._died(child, exc)
                continue
            self._drain(child)
            return True
        return self.usable

    def flush(self, wait: float, timeout: float) -> FlushOutcome | None:
        """Have the helper ingest now (waiting up to ``wait`` for the store) and answer, within
        ``timeout`` seconds; None when the helper is not usable or died meanwhile."""
        with self._lock:
            child = self._running()
            if child is None:
                return None
            self._seq += 1
            deadline = time.monotonic() + timeout
            # The store's wait ends before the answer's, so that a busy store is said so in time.
            wait = max(0.0, min(wait, timeout * 0.8))
            try:
                sent = self._send(child, f"flush {self._seq} {wait:.3f}\n".encode(), deadline)
                answer = self._answer(child, self._seq, deadline) if sent else None
            except (OSError, EOFError, ValueError) as exc:
                self._died(child, exc)
                return None
            if self._pending:  # what export asked for meanwhile
                self._pending = False
                self._request()
            if answer is None:
                return FlushOutcome("timeout", 0, child.proc.pid, f"no answer in {timeout:.1f} s")
            return answer

    def close(self, wait: float = EXIT_WAIT_SECONDS) -> None:
        with self._lock:
            if self._child is not None:
                self._child.close(wait)
                self._child = None
            if self._finalizer is not None:
                self._finalizer.detach()
                self._finalizer = None

    def after_fork_in_child(self) -> None:
        """The parent's helper is the parent's: this process starts its own when it needs one."""
        self._lock = threading.Lock()
        self._pending = False
        if self._child is not None:
            self._child.forget()
            self._child = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self._deaths = 0

    def _running(self) -> _Child | None:
        """The live helper, started now if need be (the lock held)."""
        child = self._child
        if child is not None and (child.closed or child.proc.poll() is not None):
            self._died(child, None)
            child = None
        if child is not None or not self.usable:
            return child
        try:
            level = logging.getLogger("finetuner_otel").getEffectiveLevel()
            command = [
                *self._command,
                "--log-level",
                str(level),
                "--interval",
                repr(self._interval),
            ]
            env = helper_environment(os.environ)
            if self._store is not None:
                env["FINETUNER_DB"] = self._store
            child = _Child(command, env, self._cwd)
        except Exception as exc:  # no executable, no processes or descriptors left
            self._deaths = MAX_HELPER_DEATHS
            logger.warning(
                "finetuner-otel: cannot start the ingest helper process (%s: %s); ingesting "
                "on a thread of this process instead",
                type(exc).__name__,
                exc,
            )
            return None
        self._child = child
        # An exporter dropped without shutdown() ends its helper; at exit the kernel closes the
        # pipe instead (a finalizer run at exit could close it before the last flush).
        self._finalizer = weakref.finalize(self, child.close, 0.0)
        self._finalizer.atexit = False
        return child

    def _died(self, child: _Child, exc: BaseException | None) -> None:
        child.close(1.0)  # it closed its answers or its requests: it is ending, if not gone
        code = child.proc.poll()
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self._child = None
        self._deaths += 1
        why = f"exit status {code}" if code is not None else f"{type(exc).__name__}: {exc}"
        if not self.usable:
            logger.warning(
                "finetuner-otel: the ingest helper for %s ended %d times (last: %s); ingesting "
                "on a thread of this process instead",
                self._db,
                self._deaths,
                why,
            )
        else:
            logger.info("finetuner-otel: the ingest helper ended (%s); restarting it", why)

    @staticmethod
    def _drain(child: _Child) -> None:
        """Log what the helper logged since (no flush may read its pipe for a long time);
        drop stale answers (of flushes that timed out). Never waits."""
        while _ready(child.answers, select.POLLIN, 0):
            chunk = os.read(child.answers, 65536)
            if not chunk:  # ended: the next request finds it so
                return
            child.buffer += chunk
        *lines, child.buffer = child.buffer.split(b"\n")
        for line in lines:
            if line.startswith(b"log "):
                _relog(line, child.proc.pid)

    @staticmethod
    def _send(child: _Child, data: bytes, deadline: float) -> bool:
        """Write one request (shorter than PIPE_BUF: whole or not at all); False at the deadline."""
        while True:
            try:
                os.write(child.requests, data)
                return True
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                _ready(child.requests, select.POLLOUT, left)

    @staticmethod
    def _answer(child: _Child, seq: int, deadline: float) -> FlushOutcome | None:
        """Read answer lines until the one for ``seq`` (earlier ones answered flushes that
        timed out); None at the deadline. EOFError when the helper has ended."""
        while True:
            while b"\n" in child.buffer:
                line, child.buffer = child.buffer.split(b"\n", 1)
                if line.startswith(b"log "):
                    _relog(line, child.proc.pid)
                    continue
                words = line.decode(errors="replace").split(" ", 5)
                if len(words) >= 5 and words[0] == "flushed" and words[1] == str(seq):
                    message = words[5] if len(words) > 5 else ""
                    return FlushOutcome(words[2], int(words[3]), int(words[4]), message)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if _ready(child.answers, select.POLLIN, left):
                chunk = os.read(child.answers, 65536)
                if not chunk:
                    raise EOFError("the ingest helper closed its answers")
                child.buffer += chunk
