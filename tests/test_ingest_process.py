"""Ingest in a helper process (``FINETUNER_INGEST=process``, the default): the spool is moved into
the store by a process of the exporter's own, never by the app; the helper ends with the app,
even one killed by SIGKILL; it is never instrumented itself; the exporter falls back to its
thread when the helper cannot start or keeps dying; a forked child starts a helper of its own."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from finetuner_otel import ConfigurationError, Store
from finetuner_otel.exporters import DuckDBSpanExporter

from .conftest import REPO

HELPER = "finetuner_otel.exporters._ingester"


def _spans(n: int, dataset: str = "d") -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    for i in range(n):
        with tracer.start_as_current_span("chat m") as span:
            span.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "finetuner.dataset": dataset,
                    "gen_ai.input.messages": json.dumps(
                        [{"role": "user", "parts": [{"type": "text", "content": f"hi {i}"}]}]
                    ),
                }
            )
    return list(memory.get_finished_spans())


def _count(db: Path, dataset: str | None = None) -> int:
    where = f" WHERE dataset = '{dataset}'" if dataset else ""
    [(n,)] = Store(db).sql("SELECT count(*) FROM calls" + where).rows
    return int(n)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def _env(db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINETUNER_", "OTEL_"))}
    env.update(FINETUNER_DB=str(db), PYTHONPATH=str(REPO), **extra)
    return env


def test_the_helper_ingests_not_the_app(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "s.duckdb"
    exporter = DuckDBSpanExporter(db, ingest_interval=3600)
    assert exporter.ingest_pid is None  # started on the first ingest, not before
    exporter.export(_spans(3))
    with caplog.at_level(logging.DEBUG, logger="finetuner_otel.exporters"):
        assert exporter.force_flush()
    pid = exporter.ingest_pid
    assert pid is not None and pid != os.getpid()
    assert HELPER in Path(f"/proc/{pid}/cmdline").read_text()
    assert _nice(pid) == _nice(os.getpid()) + 5  # it yields the CPU to the app
    [moved] = [r.getMessage() for r in caplog.records if "ingest helper" in r.getMessage()]
    assert f"(pid {pid}) moved 1 spool files" in moved  # the helper's own answer
    assert "finetuner-otel-ingest" not in [t.name for t in threading.enumerate()]
    assert _count(db) == 3
    exporter.shutdown()
    assert not _alive(pid)  # ended and waited for
    assert exporter.ingest_pid is None


APP = """
import sys, time, json, threading
from finetuner_otel.exporters import DuckDBSpanExporter
from tests.test_ingest_process import _spans
exporter = DuckDBSpanExporter(sys.argv[1], ingest_interval=3600)
exporter.export(_spans(2, 'app'))
assert exporter.force_flush()
print(json.dumps({'helper': exporter.ingest_pid,
                  'threads': [t.name for t in threading.enumerate()]}), flush=True)
sys.stdin.read()  # until the test closes it, or kills this process
"""


def test_the_helper_ends_when_the_app_is_killed(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    app = subprocess.Popen(
        [sys.executable, "-c", APP, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=_env(db),
        cwd=tmp_path,
        text=True,
    )
    assert app.stdout is not None and app.stdin is not None
    started = json.loads(app.stdout.readline())
    helper = started["helper"]
    assert _alive(helper) and "finetuner-otel-ingest" not in started["threads"]
    assert _count(db, "app") == 2  # ingested while the app runs, by the helper
    app.send_signal(signal.SIGKILL)
    app.wait(timeout=10)
    app.stdin.close()
    app.stdout.close()
    deadline = time.monotonic() + 5
    while _alive(helper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(helper), "the helper outlived the app killed by SIGKILL"


LAUNCHED = """
import json, os, sys
from opentelemetry import trace
from finetuner_otel.testing import OpenAIServer
with OpenAIServer() as server:
    client = server.client()
    for i in range(2):
        client.chat.completions.create(model='m', dataset_name='launched',
            messages=[{'role': 'user', 'content': f'hello {i}'}])
assert trace.get_tracer_provider().force_flush()
print(os.getpid(), flush=True)
sys.stdin.read()
"""
# Run with a helper's environment: is anything of OpenTelemetry's set up in that process?
PROBE = """
import json, sys
from opentelemetry import trace
print(json.dumps({
    'sitecustomize': getattr(sys.modules.get('sitecustomize'), '__file__', None),
    'provider': type(trace.get_tracer_provider()).__name__,
}))
"""


def _children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (not those ended and not yet waited for)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return [child for child in found if _alive(child)]


def test_under_opentelemetry_instrument_the_helper_is_not_instrumented(tmp_path: Path) -> None:
    db = tmp_path / "launched.duckdb"
    (tmp_path / "app.py").write_text(LAUNCHED)
    launcher = Path(sys.executable).with_name("opentelemetry-instrument")
    app = subprocess.Popen(
        [str(launcher), "--traces_exporter", "finetuner_duckdb", sys.executable, "app.py"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(db, FINETUNER_INGEST_INTERVAL="0"),  # each export asks for an ingest
        cwd=tmp_path,
        text=True,
    )
    assert app.stdout is not None and app.stdin is not None
    try:
        app_pid = int(app.stdout.readline())
        helpers = _children(app_pid)
        assert helpers, "no helper ingested the launched app's spans"
        app_path = Path(f"/proc/{app_pid}/environ").read_bytes().split(b"\0")
        assert any(b"auto_instrumentation" in v for v in app_path if v.startswith(b"PYTHONPATH="))
        for helper in helpers:
            assert HELPER in Path(f"/proc/{helper}/cmdline").read_text()
            assert _children(helper) == []  # no helper of its own
            raw = Path(f"/proc/{helper}/environ").read_bytes().split(b"\0")
            env = dict(v.decode().split("=", 1) for v in raw if b"=" in v)
            assert env["OTEL_SDK_DISABLED"] == "true" and env["OTEL_TRACES_EXPORTER"] == "none"
            assert "auto_instrumentation" not in env["PYTHONPATH"]
            probe = subprocess.run(
                [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
            )
            assert json.loads(probe.stdout) == {
                "sitecustomize": None,
                "provider": "ProxyTracerProvider",
            }
    finally:
        _, stderr = app.communicate(timeout=60)
    assert app.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert _count(db, "launched") == 2
    assert not any(_alive(h) for h in helpers)


def test_thread_mode_ingests_in_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FINETUNER_INGEST", "thread")
    exporter = DuckDBSpanExporter(tmp_path / "s.duckdb", ingest_interval=0)
    with caplog.at_level(logging.DEBUG, logger="finetuner_otel.exporters"):
        exporter.export(_spans(2))  # interval 0: the ingest thread is woken at once
        assert "finetuner-otel-ingest" in [t.name for t in threading.enumerate()]
        assert exporter.force_flush()
    assert exporter.ingest_pid is None
    assert not [r for r in caplog.records if "ingest helper" in r.getMessage()]
    assert _count(tmp_path / "s.duckdb") == 2
    exporter.shutdown()


@pytest.mark.parametrize("setting", ["fork", ""])
def test_an_unknown_ingest_mode_is_refused(monkeypatch: pytest.MonkeyPatch, setting: str) -> None:
    with pytest.raises(ConfigurationError, match=r"ingest= must be 'process' .* or 'thread'"):
        DuckDBSpanExporter("s.duckdb", ingest=setting)
    monkeypatch.setenv("FINETUNER_INGEST", "fork")
    with pytest.raises(ConfigurationError, match="FINETUNER_INGEST must be 'process'"):
        DuckDBSpanExporter("s.duckdb")


def test_a_helper_that_cannot_start_leaves_the_ingest_to_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    exporter = DuckDBSpanExporter(tmp_path / "s.duckdb", ingest_interval=3600)
    for n in range(2):
        exporter.export(_spans(2, f"r{n}"))
        with caplog.at_level(logging.WARNING, logger="finetuner_otel.exporters"):
            assert exporter.force_flush()
        assert _count(tmp_path / "s.duckdb", f"r{n}") == 2
    [warning] = [r.getMessage() for r in caplog.records]  # once, not once per ingest
    assert "cannot start the ingest helper process (FileNotFoundError" in warning
    assert "on a thread of this process instead" in warning
    exporter.shutdown()


def test_a_helper_that_keeps_dying_leaves_the_ingest_to_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dies = tmp_path / "dies"
    dies.write_text("#!/bin/sh\nexit 3\n")
    dies.chmod(0o700)
    monkeypatch.setattr(sys, "executable", str(dies))
    exporter = DuckDBSpanExporter(tmp_path / "s.duckdb", ingest_interval=3600)
    with caplog.at_level(logging.WARNING, logger="finetuner_otel.exporters"):
        for n in range(5):  # each flush that finds the helper dead ingests in the app
            exporter.export(_spans(1, f"r{n}"))
            assert exporter.force_flush()
            assert _count(tmp_path / "s.duckdb", f"r{n}") == 1
    [warning] = [r.getMessage() for r in caplog.records]
    assert "ended 3 times (last: exit status 3)" in warning, warning
    assert exporter.ingest_pid is None
    exporter.shutdown()


def test_two_exporters_each_with_its_helper_write_one_store(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    first, second = (DuckDBSpanExporter(db, ingest_interval=3600) for _ in range(2))
    for _ in range(3):  # the two helpers take turns at the store's lock
        first.export(_spans(5, "first"))
        second.export(_spans(7, "second"))
        flushes = [threading.Thread(target=e.force_flush) for e in (first, second)]
        for flush in flushes:
            flush.start()
        for flush in flushes:
            flush.join()
    assert first.ingest_pid != second.ingest_pid
    first.shutdown()
    second.shutdown()
    assert (_count(db, "first"), _count(db, "second")) == (15, 21)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_starts_a_helper_of_its_own(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    exporter = DuckDBSpanExporter(db, ingest_interval=3600)
    exporter.export(_spans(1, "parent"))
    assert exporter.force_flush()
    parents = exporter.ingest_pid
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: it must not write to the parent's helper
        try:
            os.close(read)
            exporter.export(_spans(2, "child"))
            flushed = exporter.force_flush()
            own = exporter.ingest_pid
            exporter.shutdown()
            os.write(write, json.dumps({"flushed": flushed, "helper": own}).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        child = json.loads(answer.read())
    os.waitpid(pid, 0)
    assert child["flushed"] and child["helper"] not in (None, parents)
    assert _count(db, "child") == 2
    exporter.export(_spans(1, "parent again"))  # and the parent's helper still serves it
    assert exporter.force_flush()
    assert exporter.ingest_pid == parents and _count(db, "parent again") == 1
    exporter.shutdown()


def test_what_the_helper_logs_is_logged_by_the_app(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "s.duckdb"
    exporter = DuckDBSpanExporter(db, ingest_interval=3600)
    spool = exporter.settings.spool_dir
    spool.mkdir(parents=True, exist_ok=True)
    (spool / "00000000000000000001-1-1-0.jsonl").write_text('{"id": "torn')
    exporter.export(_spans(2))
    with caplog.at_level(logging.WARNING):
        assert exporter.force_flush()
    [record] = [r for r in caplog.records if "could not be ingested" in r.getMessage()]
    assert record.name.startswith("finetuner_otel.store")  # as if ingest had run here
    assert f"(in the ingest helper, pid {exporter.ingest_pid})" in record.getMessage()
    assert _count(db) == 2
    exporter.shutdown()


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_the_last_spans_of_a_burst_are_taken_in_without_a_flush(tmp_path: Path, mode: str) -> None:
    """Spans exported after the last ingest request, then nothing: the helper (or the thread)
    takes them in after one quiet interval, so a reader elsewhere sees them (a receiver of an
    Iceberg store has no other way to bring its spool to readers on other machines)."""
    db = tmp_path / "s.duckdb"
    exporter = DuckDBSpanExporter(db, ingest_interval=2.0, ingest=mode)
    try:
        exporter.export(_spans(2, "first"))  # starts the helper (or thread), asks nothing
        assert exporter.force_flush()
        exporter.export(_spans(3, "last"))  # within the interval of that request: asks nothing
        deadline = time.monotonic() + 20
        counted = 0
        while time.monotonic() < deadline:
            if db.exists():
                counted = int(Store(db, read_only=True).sql("SELECT count(*) FROM calls")[0][0])
                if counted == 5:
                    break
            time.sleep(0.1)
        assert counted == 5
    finally:
        exporter.shutdown()


def test_an_interval_longer_than_poll_can_wait_keeps_the_helper(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # On main: poll() refused 1e12 ms (OverflowError), the helper died at start three times,
    # and the app ingested on its own thread from then on.
    db = tmp_path / "s.duckdb"
    exporter = DuckDBSpanExporter(db, ingest_interval=1e9)
    try:
        for batch in range(2):
            exporter.export(_spans(2, f"b{batch}"))
            assert exporter.force_flush()
        pid = exporter.ingest_pid
        assert pid is not None and _alive(pid)
        assert _count(db) == 4
        assert "ingest helper ended" not in caplog.text
    finally:
        exporter.shutdown()
