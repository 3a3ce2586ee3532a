"""Whole processes: the zero-code launcher, concurrent writers and a reader, SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from finetuner_otel import Store

from .conftest import REPO

pytestmark = pytest.mark.slow


def _env(db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINETUNER_", "OTEL_"))}
    env.update(FINETUNER_DB=str(db), PYTHONPATH=str(REPO), **extra)
    return env


@pytest.mark.parametrize("sampler", [None, "always_off"])
def test_opentelemetry_instrument_fills_the_store(tmp_path: Path, sampler: str | None) -> None:
    """With the launcher too, and whatever OTEL_TRACES_SAMPLER drops."""
    app = tmp_path / "app.py"
    app.write_text(
        "from finetuner_otel.testing import OpenAIServer\n"
        "with OpenAIServer() as server:\n"
        "    client = server.client()\n"
        "    for i in range(3):\n"
        "        client.chat.completions.create(model='gpt-4o-mini',\n"
        "            messages=[{'role': 'user', 'content': f'hello {i}'}],\n"
        "            dataset_name='launcher')\n"
    )
    db = tmp_path / "launcher.duckdb"
    launcher = Path(sys.executable).with_name("opentelemetry-instrument")
    done = subprocess.run(
        [str(launcher), "--traces_exporter", "finetuner_duckdb", sys.executable, str(app)],
        env=_env(db, **({"OTEL_TRACES_SAMPLER": sampler} if sampler else {})),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    result = Store(db).sql("SELECT dataset, messages->>'$[0].content' FROM calls ORDER BY 2")
    assert result.rows == [("launcher", f"hello {i}") for i in range(3)]


def test_four_writers_and_a_reader_lose_nothing(tmp_path: Path) -> None:
    db = tmp_path / "shared.duckdb"
    env = _env(db, FINETUNER_INGEST_INTERVAL="0.2")
    writers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests._worker", "write", "250", f"w{n}"],
            env=env,
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    reads = 0
    while any(w.poll() is None for w in writers):
        if db.exists():  # a reader holding the file blocks every ingest while it reads
            try:
                con = duckdb.connect(str(db), read_only=True)
            except duckdb.IOException:
                continue  # a writer is ingesting right now
            try:
                con.execute("SELECT count(*) FROM calls").fetchall()
                reads += 1
                time.sleep(0.3)
            finally:
                con.close()
        time.sleep(0.05)
    for w in writers:
        _, err = w.communicate(timeout=120)
        assert w.returncode == 0, err
    store = Store(db)
    store.ingest()
    assert reads > 0
    assert store.pending() == 0
    assert store.sql(
        "SELECT dataset, count(*), count(DISTINCT id) FROM calls GROUP BY 1 ORDER BY 1"
    ).rows == [(f"w{n}", 250, 250) for n in range(4)]


def test_sigkill_after_force_flush_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "killed.duckdb"
    duckdb.connect(str(db)).close()  # an empty store that this test can hold
    holder = duckdb.connect(str(db), read_only=True)
    with subprocess.Popen(
        [sys.executable, "-m", "tests._worker", "flush_then_wait", "25"],
        env=_env(db, FINETUNER_INGEST_INTERVAL="3600"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as worker:
        try:
            assert worker.stdout is not None and worker.stderr is not None
            line = worker.stdout.readline()
            assert line.strip() == "flushed", worker.stderr.read()
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
        finally:
            if worker.poll() is None:
                worker.kill()
            holder.close()
    store = Store(db)
    assert store.pending() >= 1  # the spans waited in the spool
    store.ingest()
    assert store.sql("SELECT count(*) FROM calls WHERE dataset = 'killed'").rows == [(25,)]


@pytest.mark.slow
def test_eight_writers_and_a_reader_holding_the_store_for_ten_seconds(tmp_path: Path) -> None:
    """The spool grows while a reader holds the store, and drains once it lets go."""
    db = tmp_path / "shared.duckdb"
    record = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    Store(db).add_examples([record], dataset="seed")  # the store exists, with its schema
    spool = Path(f"{db}.spool")
    backlog = 0
    # A read-only connection, taken before the writers start (eight writers ingesting every
    # 0.2 s would otherwise keep a reader out until they are done) and held while they write:
    # no writer can ingest meanwhile.
    con = duckdb.connect(str(db), read_only=True)
    env = _env(db, FINETUNER_INGEST_INTERVAL="0.2")
    writers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests._worker", "write", "150", f"w{n}"],
            env=env,
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(8)
    ]
    deadline = time.monotonic() + 120
    try:  # held for 10 s, and on until the spool has grown (a loaded machine starts slowly)
        held_until = time.monotonic() + 10
        while time.monotonic() < held_until or (backlog == 0 and time.monotonic() < deadline):
            con.execute("SELECT count(*) FROM recorded_calls").fetchall()
            backlog = max(backlog, len(list(spool.glob("*.jsonl"))))
            time.sleep(0.2)
    finally:
        con.close()
    for w in writers:
        _, err = w.communicate(timeout=180)
        assert w.returncode == 0, err
    store = Store(db)
    store.ingest()
    assert backlog > 0  # the spool grew while the store was held
    assert store.pending() == 0  # and drained
    assert store.sql(
        "SELECT dataset, count(*), count(DISTINCT id) FROM calls WHERE dataset <> 'seed' "
        "GROUP BY 1 ORDER BY 1"
    ).rows == [(f"w{n}", 150, 150) for n in range(8)]
