"""The Iceberg store beside the DuckDB file (issue 23), measured in one run: ``make bench-iceberg``.

1. Receivers: spans/s from OTLP/HTTP clients to rows queryable in the store, through 1, 2 and 4
   `finetuner serve` processes writing one Iceberg store (a PostgreSQL catalog, Parquet files in
   a local folder), and through 1 receiver into a DuckDB file (it allows one writer). Each
   receiver has a client thread posting requests of 50 spans as fast as it is answered; the
   clock runs from the first request to the moment every span is a row.
2. Queries over a 100,000-call dataset on each store: ``get_dataset()`` (every example loaded),
   and a count over one day of the dataset (the time filter pushed down to the Parquet scan),
   the median of 3.

    python tests/benchmarks/iceberg.py [--spans 8000] [--calls 100000]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from _fleet import free_port, send, spool_line, start_receiver, stop  # noqa: E402
from _postgres import Postgres  # noqa: E402

from finetuner_otel import Store  # noqa: E402
from finetuner_otel.store.spool import write_spool  # noqa: E402

_T0 = 1_780_000_000 * 10**9  # 2026-05-28
_databases = iter(range(1000))


def _lake(pg: Postgres, root: Path) -> str:
    url = pg.database(f"bench{next(_databases)}")
    return url.replace("postgresql://", "iceberg+postgresql://") + f"?warehouse={root}/wh"


def _rows(store: str, spool: Path) -> int:
    try:
        found = Store(store, spool_dir=spool, read_only=True)
        return int(found.sql("SELECT count(*) FROM recorded_calls")[0][0]) if found.exists() else 0
    except Exception:
        return 0


def receivers(store: str, root: Path, count: int, spans: int) -> float:
    """Spans/s through ``count`` receivers into ``store``."""
    spools = [root / f"spool{i}" for i in range(count)]
    ports = [free_port() for _ in spools]
    fleet = [start_receiver(store, s, p, interval=1.0) for s, p in zip(spools, ports, strict=True)]
    accepted = [0] * count
    each = spans // count
    clients = [
        threading.Thread(target=send, args=(ports[i], 1 + i * 1_000_000, each, accepted, i, 50))
        for i in range(count)
    ]
    start = time.perf_counter()
    for t in clients:
        t.start()
    for t in clients:
        t.join()
    while _rows(store, root / "reader") < sum(accepted):
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    for process in fleet:
        stop(process)
    return sum(accepted) / elapsed


def _calls(n: int, dataset: str = "big") -> list[str]:
    """``n`` calls over 10 days, about 200 characters of messages each."""
    return [
        spool_line(
            i,
            dataset=dataset,
            start_ns=_T0 + (i % 10) * 86_400 * 10**9 + i * 1_000,
            question=f"ticket {i} " * 20,
            answer="refund",
        )
        for i in range(n)
    ]


def queries(store: str, spool: Path, calls: int) -> dict[str, float]:
    lines = _calls(calls)
    for start in range(0, calls, 5000):
        write_spool(spool, lines[start : start + 5000])
    began = time.perf_counter()
    target = Store(store, spool_dir=spool)
    target.ingest()
    ingest_s = time.perf_counter() - began
    if "iceberg" in store:
        target.compact(min_files=2)
    day = datetime.fromtimestamp(_T0 / 1e9, timezone.utc)
    figures = {"ingest_s": ingest_s}
    for name, run in (
        ("get_dataset_s", lambda: len(target.get_dataset("big"))),
        (
            "one_day_count_s",
            lambda: target.sql(
                "SELECT count(*) FROM calls WHERE dataset = 'big' AND started_at >= ? "
                "AND started_at < ? + INTERVAL 1 DAY",
                [day, day],
            )[0][0],
        ),
    ):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            result = run()
            times.append(time.perf_counter() - t)
        assert result in (calls, calls // 10), result
        figures[name] = statistics.median(times)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=8000, help="spans per receiver run")
    parser.add_argument("--calls", type=int, default=100_000, help="calls of the query runs")
    args = parser.parse_args()
    print(f"Python {platform.python_version()}, {platform.machine()}, {platform.platform()}")
    with Postgres() as pg, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        duck = receivers(str(root / "d1" / "store.duckdb"), root / "d1", 1, args.spans)
        print(f"receivers -> DuckDB file, 1 receiver: {duck:,.0f} spans/s (1.00)")
        for count in (1, 2, 4):
            rate = receivers(_lake(pg, root / f"i{count}"), root / f"i{count}", count, args.spans)
            print(
                f"receivers -> Iceberg, {count} receiver(s): {rate:,.0f} spans/s "
                f"({rate / duck:.2f})"
            )
        on_file = queries(str(root / "q" / "store.duckdb"), root / "q" / "spool", args.calls)
        on_lake = queries(_lake(pg, root / "qi"), root / "qi" / "spool", args.calls)
        for key in on_file:
            ratio = on_lake[key] / on_file[key]
            print(
                f"{args.calls:,} calls, {key}: DuckDB file {on_file[key]:.3f} s, "
                f"Iceberg {on_lake[key]:.3f} s ({ratio:.2f}x)"
            )


if __name__ == "__main__":
    main()
