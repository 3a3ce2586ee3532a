"""The store on Apache Iceberg (issue 23): a real PostgreSQL server as the SQL catalog (Debian's
package, a throwaway cluster), Parquet files in a temporary warehouse, pyiceberg, and DuckDB
reading them. Several writers at once: receivers (`finetuner serve`, whole processes), a
reader querying throughout, one receiver killed with SIGKILL mid-ingest, and record-module
transactions from two processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import finetuner_otel
from finetuner_otel import Store
from finetuner_otel._errors import StoreError
from finetuner_otel.eval import Eval
from finetuner_otel.store._lake import LakeStore
from finetuner_otel.store.spool import write_spool
from finetuner_otel.testing import OpenAIServer, Reply

sys.path.insert(0, str(Path(__file__).parent))
from _fleet import free_port, send, spool_line, start_receiver, stop
from _postgres import Postgres

_T0 = 1_780_000_000 * 10**9
_databases = iter(range(10_000))


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with Postgres() as pg:
        yield pg


@pytest.fixture
def lake(postgres: Postgres, tmp_path: Path) -> str:
    """A fresh Iceberg store: its own catalog database and warehouse folder."""
    url = postgres.database(f"lake{next(_databases)}")
    return url.replace("postgresql://", "iceberg+postgresql://") + f"?warehouse={tmp_path}/wh"


def _line(n: int, dataset: str = "lake", day: int = 0) -> str:
    start = _T0 + day * 86_400 * 10**9 + n * 1_000_000
    return spool_line(n, dataset=dataset, start_ns=start, question=f"q{n}", answer=f"a{n}")


def _counts(store: Store) -> tuple[int, int]:
    rows, distinct = store.sql("SELECT count(*), count(DISTINCT id) FROM recorded_calls").rows[0]
    return int(rows), int(distinct)


class Classification(Eval):
    def compare(self, prediction: str, target: str) -> bool:
        return prediction.strip() == target.strip()


def _seed_flow(store: Store, server: OpenAIServer, out: Path) -> dict[str, object]:
    """The seed's API, end to end, on ``store``: what each step gives, ids left out."""
    seen: dict[str, object] = {}
    seen["datasets"] = [tuple(d) for d in store.list_datasets()]
    dataset = store.get_dataset("search_classifier")
    seen["messages"] = [e.messages for e in dataset]
    train, val = dataset.split(0.5)
    seen["split"] = (len(train), len(val))
    seen["sql"] = store.sql(
        "SELECT count(*) FROM examples WHERE dataset = ?", ["search_classifier"]
    ).rows
    first, second = (e.id for e in dataset.examples[:2])
    export = train.to_jsonl(out / "train.jsonl")
    seen["snapshot"] = [e.messages for e in store.get_snapshot(export.snapshot)]
    store.reject(first, note="wrong")
    store.correct(second, "travel")
    seen["reviewed"] = len(store.get_dataset("search_classifier"))
    seen["correction"] = store.get_call(second).correction
    seen["snapshots"] = [(s.dataset, s.examples) for s in store.snapshots()]
    # the answer to "query N" is right for even N (the eval's calls run concurrently)
    server.responder = lambda request: Reply(
        ["food", "travel"][int(request.json["messages"][-1]["content"].split()[-1]) % 2]
    )
    result = Classification(server.client(), store=store, progress=False, backoff=0).run(
        "gpt-4o-mini", val, temperature=0
    )
    seen["accuracy"] = result.accuracy
    seen["eval_runs"] = store.sql("SELECT examples, accuracy FROM eval_runs").rows
    seen["eval_results"] = store.sql("SELECT count(*) FROM eval_results").rows
    seen["views"] = store.sql(
        "SELECT name, examples, calls, errors FROM datasets ORDER BY name"
    ).rows
    return seen


def test_the_seed_api_gives_the_same_on_iceberg_as_on_a_duckdb_file(
    lake: str, server: OpenAIServer, tmp_path: Path
) -> None:
    """Calls captured by instrument() into the lake, the same spool lines into a DuckDB file;
    then the same steps on both give the same answers."""
    handle = finetuner_otel.instrument(lake, spool_dir=tmp_path / "spool")
    try:
        client = server.client()
        for i in range(6):
            server.enqueue(Reply(["food", "travel"][i % 2]))
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": f"query {i}"}],
                dataset_name="search_classifier",
            )
        on_lake = handle.open_store()
    finally:
        handle.shutdown()
    assert on_lake.location.startswith("iceberg+postgresql://") and on_lake.exists()
    lines = on_lake.sql("SELECT count(*) FROM recorded_calls").rows
    assert lines == [(6,)]
    with LakeStore(on_lake.settings.lake).reading() as con:  # type: ignore[arg-type]
        rows = con.sql("SELECT * FROM recorded_calls").to_arrow_table()
    on_file = Store(tmp_path / "file.duckdb")
    with on_file.transaction() as con:  # the very rows, copied across through Arrow
        con.register("lake_rows", rows)
        con.execute("INSERT INTO recorded_calls SELECT * FROM lake_rows")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert _seed_flow(on_lake, server, tmp_path / "a") == _seed_flow(
        on_file, server, tmp_path / "b"
    )


def test_a_batch_committed_twice_is_stored_once(lake: str, tmp_path: Path) -> None:
    """A receiver killed after its commit and before deleting its spool ingests the same files
    again when it comes back: nothing is doubled."""
    spool = tmp_path / "spool"
    write_spool(spool, [_line(n) for n in range(200)])
    kept = tmp_path / "kept"
    shutil.copytree(spool, kept)
    store = Store(lake, spool_dir=spool)
    assert store.ingest() == 1
    shutil.rmtree(spool)
    shutil.copytree(kept, spool)  # the files back, as if never deleted
    write_spool(spool, [_line(n) for n in range(150, 260)])  # and an overlapping batch
    assert store.ingest() == 2
    assert _counts(store) == (260, 260)


def test_two_writers_racing_with_the_same_rows_store_them_once(lake: str, tmp_path: Path) -> None:
    spools = []
    for name in ("a", "b"):
        spool = tmp_path / name
        write_spool(spool, [_line(n) for n in range(300)])
        spools.append(spool)
    errors: list[BaseException] = []

    def ingest(spool: Path) -> None:
        try:
            Store(lake, spool_dir=spool).ingest()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    Store(lake, spool_dir=tmp_path / "none").ingest()  # nothing yet: makes nothing
    threads = [threading.Thread(target=ingest, args=(s,)) for s in spools]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _counts(Store(lake, spool_dir=tmp_path / "a")) == (300, 300)


def test_reads_take_nothing_but_the_store(lake: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    write_spool(spool, [_line(n) for n in range(3)])
    store = Store(lake, spool_dir=spool)
    store.ingest()
    for attack in (
        "SELECT * FROM read_text('/etc/passwd')",
        f"COPY (SELECT 1) TO '{tmp_path}/out.csv'",
        f"ATTACH '{tmp_path}/x.duckdb' AS x",
        "SET enable_external_access = true",
        "INSTALL httpfs",
    ):
        with pytest.raises(StoreError):
            store.sql(attack)
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "x.duckdb").exists()
    assert store.sql("SELECT count(*) FROM calls")[0][0] == 3


def test_read_only_and_missing_stores_write_nothing(lake: str, tmp_path: Path) -> None:
    store = Store(lake, spool_dir=tmp_path / "spool", read_only=True)
    assert not store.exists() and store.list_datasets() == []
    with pytest.raises(StoreError, match="read-only"):
        store.accept("x")
    assert not Store(lake, spool_dir=tmp_path / "spool").exists()  # asking made nothing


def test_a_password_never_shows(postgres: Postgres, tmp_path: Path) -> None:
    store = Store(
        f"iceberg+postgresql://postgres:s3cret@127.0.0.1:{postgres.port}/x?warehouse={tmp_path}"
    )
    assert "s3cret" not in repr(store) and "s3cret" not in store.location


def test_compaction_keeps_every_row_and_leaves_fewer_files(lake: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    store = Store(lake, spool_dir=spool)
    for start in range(0, 100, 10):  # ten small commits, as a receiver makes them
        write_spool(spool, [_line(n, day=n % 2) for n in range(start, start + 10)])
        store.ingest()
    before = store.sql("SELECT id, dataset, started_at FROM calls ORDER BY id").rows
    data = sorted((tmp_path / "wh").rglob("*.parquet"))
    orphan = data[0].with_name("00000-orphan-of-a-lost-race.parquet")
    shutil.copyfile(data[0], orphan)  # written, never committed
    report = store.compact(min_files=4)
    assert report["partitions_rewritten"] == 2  # two days of one dataset
    assert report["files_before"] == 20 and report["files_after"] == 2
    assert report["orphans_removed"] == 0 and orphan.exists()  # too young to be sure
    assert store.sql("SELECT id, dataset, started_at FROM calls ORDER BY id").rows == before
    report = store.compact(min_files=4, orphans_older_than=timedelta(0))
    assert report["orphans_removed"] >= 1 and not orphan.exists()
    assert store.sql("SELECT id, dataset, started_at FROM calls ORDER BY id").rows == before


def _run_the_fleet(
    lake: str, spools: list[Path], ports: list[int], receivers: list[subprocess.Popen[bytes]]
) -> tuple[list[int], list[str]]:
    """Send 400 spans to each receiver at once; kill the last (and its ingest helper) halfway,
    while spans still arrive and its spool is being taken in; stop the others; start it again
    on its spool and stop it."""
    accepted = [0] * len(receivers)
    senders = [
        threading.Thread(target=send, args=(ports[i], 1 + i * 100_000, 400, accepted, i))
        for i in range(len(receivers))
    ]
    for t in senders:
        t.start()
    victim_spool = spools[-1]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
        accepted[-1] >= 200 and list(victim_spool.glob("*.jsonl"))
    ):
        time.sleep(0.005)
    os.killpg(receivers[-1].pid, signal.SIGKILL)
    receivers[-1].communicate()
    for t in senders:
        t.join()
    logs = [stop(process) for process in receivers[:-1]]
    again = start_receiver(lake, victim_spool, ports[-1])  # back on the same spool
    logs.append(stop(again))
    return accepted, logs


def test_four_receivers_at_once_with_a_reader_and_one_killed_mid_ingest(
    lake: str, tmp_path: Path
) -> None:
    """4 receivers x 400 spans, a reader querying throughout, and one receiver (with its
    ingest helper) killed by SIGKILL while it ingests, then started again on its spool:
    rows = spans accepted, none doubled, none lost."""
    spools = [tmp_path / f"spool{i}" for i in range(4)]
    ports = [free_port() for _ in spools]
    receivers = [start_receiver(lake, s, p) for s, p in zip(spools, ports, strict=True)]
    Store(lake, spool_dir=tmp_path / "reader").ingest()  # nothing: makes nothing
    seen: list[tuple[int, int]] = []
    reader_errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        reader = Store(lake, spool_dir=tmp_path / "reader", read_only=True)
        while not done.is_set():
            try:
                if reader.exists():
                    seen.append(_counts(reader))
            except BaseException as exc:
                reader_errors.append(exc)
            time.sleep(0.1)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        accepted, logs = _run_the_fleet(lake, spools, ports, receivers)
    finally:
        done.set()
        reader.join()
        for process in receivers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    assert reader_errors == []
    assert seen, "the reader never saw the store"
    assert all(rows == distinct for rows, distinct in seen), "a reader saw a doubled row"
    assert [r for r, _ in seen] == sorted(r for r, _ in seen), "a reader saw rows vanish"
    final = Store(lake, spool_dir=tmp_path / "reader", read_only=True)
    assert accepted[:3] == [400, 400, 400] and 200 <= accepted[3] < 400
    rows, distinct = _counts(final)
    assert rows == distinct  # none doubled
    per_receiver = [0] * 4
    for (span_id,) in final.sql("SELECT span_id FROM calls").rows:
        per_receiver[int(span_id, 16) // 100_000] += 1
    # none lost; the victim may also have stored the one request it was killed answering
    assert per_receiver[:3] == accepted[:3]
    assert accepted[3] <= per_receiver[3] <= accepted[3] + 10
    left = {s.name: sorted(p.name for p in s.glob("*.jsonl")) for s in spools}
    assert not any(left.values()), (left, logs)  # every spool taken in


_WRITER = """
import sys
from finetuner_otel import Store
store = Store(sys.argv[1], spool_dir=sys.argv[2])
ids = [r[0] for r in store.sql("SELECT id FROM calls ORDER BY id").rows]
for call_id in ids[int(sys.argv[3])::2]:
    store.accept(call_id, note=sys.argv[3])
"""


def test_feedback_from_two_processes_at_once_is_all_kept(lake: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    write_spool(spool, [_line(n) for n in range(12)])
    Store(lake, spool_dir=spool).ingest()
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, lake, str(tmp_path / f"s{i}"), str(i)])
        for i in range(2)
    ]
    assert [w.wait(timeout=300) for w in writers] == [0, 0]
    store = Store(lake, spool_dir=spool)
    assert store.sql("SELECT count(*), count(DISTINCT call_id) FROM feedback").rows == [(12, 12)]


_UPSERTER = """
import sys
from finetuner_otel import Store
store = Store(sys.argv[1], spool_dir=sys.argv[2])
for n in range(8):
    with store.transaction() as con:  # as the eval runner keeps its cache
        con.execute(
            "INSERT OR REPLACE INTO eval_cache (key, model, answer) "
            "VALUES (?, 'm', ?), (?, 'm', ?)",
            ["shared", f'"{sys.argv[3]}-{n}"', f"{sys.argv[3]}-{n}", '"own"'],
        )
"""


def test_upserts_of_one_key_from_two_processes_keep_one_row_the_last(
    lake: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    write_spool(spool, [_line(0)])
    Store(lake, spool_dir=spool).ingest()
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _UPSERTER, lake, str(tmp_path / f"s{i}"), f"w{i}"],
            stderr=subprocess.PIPE,
        )
        for i in range(2)
    ]
    errors = [w.communicate(timeout=300)[1].decode() for w in writers]
    assert [w.returncode for w in writers] == [0, 0], errors
    rows = Store(lake, spool_dir=spool).sql("SELECT key, answer FROM eval_cache").rows
    answers = {key: json.loads(answer) for key, answer in rows}
    assert len(rows) == len(answers) == 17  # "shared" once, and each writer's 8 keys
    assert answers["shared"] in {"w0-7", "w1-7"}  # the last write of one of them


def test_the_cli_reads_and_writes_the_lake(lake: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    write_spool(spool, [_line(n, dataset="cli") for n in range(5)])
    env = {**os.environ, "FINETUNER_SPOOL_DIR": str(spool)}

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "finetuner_otel.cli", "--db", lake, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("ingest")
    listed = json.loads(cli("--json", "datasets", "list"))
    assert [(d["name"], d["examples"]) for d in listed] == [("cli", 5)]
    assert "5" in cli("sql", "SELECT count(*) FROM calls WHERE dataset = 'cli'")
    compacted = cli("compact", "--min-files", "1")
    assert "partitions" in compacted
