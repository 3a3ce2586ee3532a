"""Benchmarks of the importers and the leakage check (run by hand, not by the test suite).

1. ``import_openai_stored`` from the local server (``finetuner_otel.testing``): rows/s for
   N stored completions, each with a system and a user message, 100 a page, their messages
   read 8 at a time (the defaults). Every completion costs one list share and one messages
   request, so this measures our side plus the local HTTP round trips, not OpenAI's latency.
2. ``import_openpipe`` and ``import_langfuse``: rows/s from a JSONL file of N entries.
3. ``Dataset.leakage``: 100,000 training examples against 10,000 eval examples of synthetic
   support tickets (30-60 words from a 5,000-word vocabulary), with 1% of the eval set planted
   as exact repeats and 1% as near-duplicates (another greeting); the time of the exact pass
   alone (``near=False``) and of the whole check, and what each found.

    python tests/benchmarks/imports.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from finetuner_otel.importers import import_langfuse, import_openai_stored, import_openpipe
from finetuner_otel.store import Dataset, Example, Store
from finetuner_otel.testing import OpenAIServer

SYSTEM = "You are Acme's support agent."


def _rate(rows: int, seconds: float) -> str:
    return f"{rows} rows in {seconds:.2f} s: {rows / seconds:,.0f} rows/s"


def bench_openai_stored(n: int, workdir: Path) -> None:
    with OpenAIServer() as server:
        api = server.stored_completions
        for i in range(n):
            messages = [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"ticket {i}: where is my order? " * 5},
            ]
            api.add(messages, f"answer {i}", metadata={"dataset_name": f"d{i % 3}"})
        store = Store(workdir / "stored.duckdb")
        started = time.perf_counter()
        summary = import_openai_stored(server.client(), store, progress=False)
        seconds = time.perf_counter() - started
        assert summary.added == n, summary
        print(f"openai-stored (local server): {_rate(n, seconds)} ({summary.pages} pages)")
        started = time.perf_counter()
        again = import_openai_stored(server.client(), store, progress=False)
        print(f"  re-run (adds {again.added}): {time.perf_counter() - started:.2f} s")


def _openpipe(i: int) -> dict[str, object]:
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"ticket {i}: where is my order? " * 5},
            {"role": "assistant", "content": f"answer {i}"},
        ],
        "split": "TRAIN",
    }


def _langfuse(i: int) -> dict[str, object]:
    return {
        "id": f"obs-{i}",
        "traceId": f"trace-{i}",
        "type": "GENERATION",
        "startTime": "2026-10-01T12:00:00.000Z",
        "model": "gpt-4o-mini",
        "input": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"ticket {i}: where is my order? " * 5},
        ],
        "output": {"role": "assistant", "content": f"answer {i}"},
        "metadata": {"app": "support"},
    }


def bench_files(n: int, workdir: Path) -> None:
    for name, make, run in (
        ("openpipe", _openpipe, import_openpipe),
        ("langfuse", _langfuse, import_langfuse),
    ):
        path = workdir / f"{name}.jsonl"
        path.write_text("".join(json.dumps(make(i)) + "\n" for i in range(n)), encoding="utf-8")
        store = Store(workdir / f"{name}.duckdb")
        started = time.perf_counter()
        summary = run(path, store, progress=False)
        seconds = time.perf_counter() - started
        assert summary.added == n, summary
        print(f"{name} file: {_rate(n, seconds)}")


def _tickets(n: int, rng: random.Random, words: list[str]) -> list[str]:
    return [" ".join(rng.choices(words, k=rng.randint(30, 60))) for _ in range(n)]


def _examples(name: str, texts: list[str]) -> Dataset:
    return Dataset(
        name,
        [
            Example(
                f"{name}-{i}",
                name,
                [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
                {"role": "assistant", "content": "ok"},
            )
            for i, text in enumerate(texts)
        ],
    )


def bench_leakage(train_n: int, eval_n: int) -> None:
    rng = random.Random(22)
    words = [f"word{i}" for i in range(5000)]
    train_texts = [f"Hello, {t}" for t in _tickets(train_n, rng, words)]
    eval_texts = _tickets(eval_n, rng, words)
    planted = eval_n // 100
    for k in range(planted):
        eval_texts[k] = train_texts[k].upper()  # exact, once normalised
        eval_texts[planted + k] = "Good morning! " + train_texts[planted + k][len("Hello, ") :]
    train, test = _examples("train", train_texts), _examples("eval", eval_texts)
    started = time.perf_counter()
    exact = train.leakage(test, near=False)
    exact_s = time.perf_counter() - started
    started = time.perf_counter()
    report = train.leakage(test)
    whole_s = time.perf_counter() - started
    print(
        f"leakage {train_n:,} x {eval_n:,}: exact only {exact_s:.2f} s ({len(exact.exact)} "
        f"found); exact + near {whole_s:.2f} s ({len(report.exact)} exact, "
        f"{len(report.near)} near of {planted} planted each)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args()
    stored, files = (300, 5_000) if args.quick else (2_000, 50_000)
    train_n, eval_n = (10_000, 1_000) if args.quick else (100_000, 10_000)
    print(f"python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        bench_openai_stored(stored, Path(tmp))
        bench_files(files, Path(tmp))
    bench_leakage(train_n, eval_n)


if __name__ == "__main__":
    main()
