"""The eval tables, written and read here only: ``eval_runs`` (one row per run, with its
accuracy and interval), ``eval_results`` (one row per example of a run) and ``eval_cache``
(answers by model, messages and parameters, so a second run calls only what changed).

Everything goes through the store's public API: ``Store.transaction()`` to write (a run and its
rows in one transaction), ``Store.sql()`` to read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .._errors import ConfigurationError
from .._json import dumps
from ..store import Store
from ._results import ExampleResult
from ._run import EvalResult

# What the cache holds of a new answer: the model asked, and the answer message.
CacheEntries = Mapping[str, tuple[str, dict[str, Any]]]

LEAKAGE = "finetuner.leakage"  # issue 22: the run's leakage marks, in its params
_RUN_COLUMNS = (
    "id, eval, model, dataset, params, examples, scored, errors, accuracy, ci_low, ci_high, "
    "calls, retries, cached, started_at, finished_at"
)
_RESULT_COLUMNS = (
    "position, call_id, messages, target, prediction, score, reason, status, error, cached, "
    "latency_ms"
)


def load_cache(store: Store) -> dict[str, dict[str, Any]]:
    """The cached answers, by key."""
    if not store.exists():
        return {}
    rows = store.sql("SELECT key, answer FROM eval_cache").rows
    return {key: json.loads(answer) for key, answer in rows}


def save_run(
    store: Store, result: EvalResult, cache: CacheEntries, *, replace: bool = False
) -> None:
    """The run, each of its examples and the answers new to the cache, in one transaction;
    ``replace``: in place of the run of the same id (a live run that accrues, e.g. a shadow's)."""
    low, high = result.ci95
    run: list[Any] = [
        result.run_id,
        result.eval_name,
        result.model,
        result.dataset,
        # issue 22: the leakage marks travel with the run's parameters, under a key no call
        # parameter has (a dot), so eval_runs keeps its columns.
        dumps({**result.params, LEAKAGE: result.leakage} if result.leakage else result.params),
    ]
    run += [len(result.results), result.n, result.errors, result.accuracy, low, high]
    run += [result.calls, result.retries, result.cached, result.started_at, result.finished_at]
    with store.transaction() as con:
        if replace:
            con.execute("DELETE FROM eval_results WHERE run_id = ?", [result.run_id])
            con.execute("DELETE FROM eval_runs WHERE id = ?", [result.run_id])
        con.execute(f"INSERT INTO eval_runs ({_RUN_COLUMNS}) VALUES ({_marks(16)})", run)
        con.executemany(
            f"INSERT INTO eval_results (run_id, {_RESULT_COLUMNS}) VALUES ({_marks(12)})",
            [[result.run_id, *_result_row(r)] for r in result.results],
        )
        if cache:
            con.executemany(
                "INSERT OR REPLACE INTO eval_cache (key, model, answer) VALUES (?, ?, ?)",
                [[key, model, dumps(answer)] for key, (model, answer) in cache.items()],
            )


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _result_row(r: ExampleResult) -> list[Any]:
    return [
        r.position,
        r.example_id,
        dumps(r.messages),
        dumps(r.target),
        dumps(r.prediction),
        r.score,
        r.reason,
        r.status,
        r.error,
        r.cached,
        r.latency_ms,
    ]


def load_run(store: Store, run_id: str) -> EvalResult:
    """A stored run, by its id (or a unique prefix)."""
    runs = store.sql(
        "SELECT id, eval, model, dataset, params, calls, retries, started_at, finished_at "
        "FROM eval_runs WHERE starts_with(id, ?) ORDER BY started_at",
        [run_id],
    ).rows
    if len(runs) != 1:
        known = [
            r[0] for r in store.sql("SELECT id FROM eval_runs ORDER BY started_at DESC LIMIT 5")
        ]
        problem = "is ambiguous" if runs else "names no run"
        raise ConfigurationError(f"eval run {run_id!r} {problem}; latest runs: {known or 'none'}")
    rid, name, model, dataset, params, calls, retries, started, finished = runs[0]
    rows = store.sql(
        f"SELECT {_RESULT_COLUMNS} FROM eval_results WHERE run_id = ? ORDER BY position", [rid]
    ).rows
    params = json.loads(params) if params else {}
    leakage = params.pop(LEAKAGE, None)  # issue 22
    return EvalResult(
        rid,
        name,
        model,
        dataset,
        params,
        [_example_result(r) for r in rows],
        started,
        finished,
        calls or 0,
        retries or 0,
        store,
        leakage,
    )


def _example_result(r: tuple[Any, ...]) -> ExampleResult:
    return ExampleResult(
        position=r[0],
        example_id=r[1],
        messages=json.loads(r[2]),
        target=json.loads(r[3]),
        prediction=json.loads(r[4]) if r[4] is not None else None,
        score=r[5],
        reason=r[6],
        status=r[7],
        error=r[8],
        cached=r[9],
        latency_ms=r[10],
    )
