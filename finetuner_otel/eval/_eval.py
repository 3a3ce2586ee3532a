"""``Eval``: score a model on held-out examples; ``EvalResult``: what it scored, and how sure."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import random
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .._context import dataset as dataset_scope
from .._context import purpose
from .._cot import split_rationale
from .._errors import ConfigurationError
from .._json import dumps
from .._messages import message_text
from ..store import Dataset, Example, Store
from ._stats import mcnemar_exact, paired_interval, sign_flip_test, wilson

if TYPE_CHECKING:
    import openai

EVAL_DATASET = "eval"  # the dataset eval calls are recorded under (never trained on)


@dataclass(frozen=True)
class Score:
    """What ``compare`` says of one answer: a value in [0, 1] and, optionally, why."""

    value: float
    reason: str | None = None

    @property
    def passed(self) -> bool:
        return self.value >= 0.5


def as_score(value: Any) -> Score:
    """``compare``'s answer as a Score: a bool, a number in [0, 1], a Score, or (value, reason)."""
    if isinstance(value, Score):
        score = value
    elif isinstance(value, bool):
        score = Score(1.0 if value else 0.0)
    elif isinstance(value, int | float):
        score = Score(float(value))
    elif isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str | None):
        return Score(as_score(value[0]).value, value[1])
    else:
        raise ConfigurationError(
            f"compare() returns a bool, a number in [0, 1], a Score or (score, reason); "
            f"got {value!r}"
        )
    if not 0.0 <= score.value <= 1.0:
        raise ConfigurationError(f"compare() returned {score.value}, outside [0, 1]")
    return score


@dataclass(frozen=True)
class ExampleResult:
    """One example of a run: what was asked, the target, the answer and its score."""

    position: int
    example_id: str
    messages: list[dict[str, Any]]
    target: Any
    prediction: Any
    score: float | None  # None when the call or the comparison failed
    reason: str | None = None
    status: str = "ok"  # ok | error
    error: str | None = None
    cached: bool = False
    latency_ms: float | None = None

    @property
    def passed(self) -> bool | None:
        return None if self.score is None else self.score >= 0.5


@dataclass
class EvalResult:
    """A finished eval run. ``accuracy`` is the mean score over the examples that were scored
    (errors are counted apart, in ``errors``); ``ci95`` its Wilson interval."""

    run_id: str
    eval_name: str
    model: str
    dataset: str
    params: dict[str, Any]
    results: list[ExampleResult]
    started_at: datetime
    finished_at: datetime
    calls: int = 0
    retries: int = 0
    store: Store | None = field(default=None, repr=False, compare=False)

    @property
    def scored(self) -> list[ExampleResult]:
        return [r for r in self.results if r.score is not None]

    @property
    def n(self) -> int:
        return len(self.scored)

    @property
    def accuracy(self) -> float:
        scored = self.scored
        return sum(r.score or 0.0 for r in scored) / len(scored) if scored else 0.0

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson(sum(r.score or 0.0 for r in self.scored), self.n)

    @property
    def errors(self) -> int:
        return sum(r.status == "error" for r in self.results)

    @property
    def failures(self) -> int:
        """Scored examples that did not pass."""
        return sum(r.passed is False for r in self.results)

    @property
    def cached(self) -> int:
        return sum(r.cached for r in self.results)

    def __float__(self) -> float:
        return self.accuracy

    def summary(self) -> str:
        low, high = self.ci95
        return (
            f"{self.eval_name} on {self.model} ({self.dataset}): accuracy {self.accuracy:.1%} "
            f"[95% CI {low:.1%}-{high:.1%}] over {self.n} examples; {self.failures} failed, "
            f"{self.errors} errors; {self.calls} calls made, {self.cached} answers from the cache"
        )

    def __str__(self) -> str:
        return self.summary()

    def compare_to(self, baseline: EvalResult) -> Comparison:
        """This run against ``baseline``, paired on the examples both scored."""
        return Comparison.of(baseline, self)

    def report(self, path: str | Path, *baselines: EvalResult) -> Path:
        """Write a self-contained HTML report of this run, compared with each of
        ``baselines`` (e.g. the base model's run): accuracy and intervals as a chart, the
        paired comparison and its disagreements, and every example with its diff."""
        from ._report import write_report

        return write_report(Path(path), [self, *baselines])


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of two runs on the same examples."""

    baseline: EvalResult
    candidate: EvalResult
    pairs: list[tuple[ExampleResult, ExampleResult]]
    test: str
    p_value: float

    @classmethod
    def of(cls, baseline: EvalResult, candidate: EvalResult) -> Comparison:
        theirs = {r.example_id: r for r in baseline.scored}
        pairs = [(theirs[r.example_id], r) for r in candidate.scored if r.example_id in theirs]
        if not pairs:
            raise ConfigurationError(
                "the two runs scored no example in common; compare runs of the same dataset"
            )
        binary = all(a.score in (0.0, 1.0) and b.score in (0.0, 1.0) for a, b in pairs)
        if binary:
            only_base = sum(a.score == 1.0 and b.score == 0.0 for a, b in pairs)
            only_cand = sum(a.score == 0.0 and b.score == 1.0 for a, b in pairs)
            return cls(
                baseline, candidate, pairs, "exact McNemar", mcnemar_exact(only_base, only_cand)
            )
        differences = [(b.score or 0.0) - (a.score or 0.0) for a, b in pairs]
        return cls(baseline, candidate, pairs, "paired permutation", sign_flip_test(differences))

    @property
    def n(self) -> int:
        return len(self.pairs)

    @property
    def baseline_accuracy(self) -> float:
        return sum(a.score or 0.0 for a, _ in self.pairs) / self.n

    @property
    def candidate_accuracy(self) -> float:
        return sum(b.score or 0.0 for _, b in self.pairs) / self.n

    @property
    def difference(self) -> float:
        return self.candidate_accuracy - self.baseline_accuracy

    @property
    def ci95(self) -> tuple[float, float]:
        return paired_interval([(b.score or 0.0) - (a.score or 0.0) for a, b in self.pairs])

    @property
    def wins(self) -> int:
        return sum((b.score or 0.0) > (a.score or 0.0) for a, b in self.pairs)

    @property
    def losses(self) -> int:
        return sum((b.score or 0.0) < (a.score or 0.0) for a, b in self.pairs)

    @property
    def ties(self) -> int:
        return self.n - self.wins - self.losses

    @property
    def disagreements(self) -> list[tuple[ExampleResult, ExampleResult]]:
        return [(a, b) for a, b in self.pairs if a.passed != b.passed]

    def summary(self) -> str:
        low, high = self.ci95
        verdict = "significant" if self.p_value < 0.05 else "not significant"
        return (
            f"{self.candidate.model} vs {self.baseline.model} on {self.n} paired examples: "
            f"{self.candidate_accuracy:.1%} vs {self.baseline_accuracy:.1%} "
            f"({self.difference:+.1%}, 95% CI {low:+.1%} to {high:+.1%}); "
            f"{self.wins} better, {self.losses} worse, {self.ties} same; "
            f"{self.test} p = {self.p_value:.3g} ({verdict} at 0.05)"
        )

    def __str__(self) -> str:
        return self.summary()


class _Bar:
    """A one-line progress bar on a terminal; a line per tenth otherwise; or nothing."""

    def __init__(self, total: int, label: str, out: TextIO | None) -> None:
        self.total, self.label, self.out = total, label, out
        self.tty = bool(out is not None and getattr(out, "isatty", lambda: False)())
        self.done = self.errors = 0
        self.shown = -1
        self.lock = threading.Lock()

    def advance(self, error: bool) -> None:
        with self.lock:
            self.done += 1
            self.errors += error
            if self.out is None:
                return
            tenth = self.done * 10 // max(self.total, 1)
            if not self.tty and tenth == self.shown and self.done != self.total:
                return
            self.shown = tenth
            filled = self.done * 24 // max(self.total, 1)
            text = (
                f"{self.label} [{'#' * filled}{'.' * (24 - filled)}] {self.done}/{self.total}"
                + (f" ({self.errors} errors)" if self.errors else "")
            )
            self.out.write(("\r\x1b[2K" + text) if self.tty else text + "\n")
            if self.tty and self.done == self.total:
                self.out.write("\n")
            self.out.flush()


def _retryable(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, openai.APIConnectionError):  # includes timeouts
        return True
    return isinstance(exc, openai.APIStatusError) and (
        exc.status_code == 429 or exc.status_code >= 500
    )


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _answer(completion: Any) -> dict[str, Any]:
    """The first choice's message as a plain OpenAI message dict."""
    message = completion.choices[0].message
    data = message.model_dump(exclude_none=True)
    return {k: v for k, v in data.items() if k in ("role", "content", "tool_calls", "refusal")}


class Eval:
    """Score a model's answers to a dataset's inputs against the dataset's completions.

    Subclass and define ``compare(prediction, target)``: return a bool, a number in [0, 1],
    a ``Score``, or ``(score, reason)``. ``prediction`` and ``target`` are the answer's text
    by default; override ``extract(message)`` to compare something else (tool calls, JSON).

    ``client`` is the OpenAI client the model is called with (any OpenAI-compatible server).
    Calls run ``concurrency`` at a time, with rate limits, server errors and lost connections
    retried with exponential backoff (``retries`` times, from ``backoff`` seconds, honouring
    ``retry-after``). Answers are cached in the store by model, messages and parameters, so
    running again only calls what changed (``cache=False``: always call). The calls are traced
    like any other (dataset ``eval``, ``finetuner.purpose=eval``) and never become training
    examples. Each run and its rows are stored: ``eval_runs``, ``eval_results``.
    """

    name: str | None = None

    def __init__(
        self,
        client: openai.OpenAI,
        *,
        store: Store | str | Path | None = None,
        concurrency: int = 8,
        retries: int = 5,
        backoff: float = 0.5,
        cache: bool = True,
        progress: bool | TextIO = True,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(
                f"concurrency must be a whole number >= 1, got {concurrency!r}"
            )
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigurationError(f"retries must be a whole number >= 0, got {retries!r}")
        self.client = client
        self._store = store if isinstance(store, Store) or store is None else Store(store)
        self.concurrency = concurrency
        self.retries = retries
        self.backoff = backoff
        self.use_cache = cache
        self.progress = progress
        self._cache: dict[str, dict[str, Any]] = {}
        self._new_cache: dict[str, tuple[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._calls = 0
        self._retries = 0

    # --- what subclasses define ---------------------------------------------------------------

    def compare(self, prediction: Any, target: Any) -> bool | float | Score | tuple[Any, str]:
        raise NotImplementedError(
            f"{type(self).__name__} must define compare(self, prediction, target)"
        )

    def extract(self, message: Mapping[str, Any]) -> Any:
        """What is compared of an assistant message: its text; of a chain-of-thought answer
        (``<reasoning>...</reasoning><answer>...</answer>``), the final answer only."""
        return split_rationale(message_text(message))[1]

    def target(self, example: Example) -> Any:
        """The expected answer: what ``extract`` gives of the stored completion (or its
        correction)."""
        return self.extract(example.completion)

    # --- calling the model --------------------------------------------------------------------

    def complete(self, model: str, messages: list[dict[str, Any]], **params: Any) -> dict[str, Any]:
        """One chat completion's answer message, through the cache, with retries. For use in
        ``compare`` too (an LLM judge calls its model this way)."""
        return self._complete(model, messages, params)[0]

    def _complete(
        self,
        model: str,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        client: openai.OpenAI | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """The answer, and whether it came from the cache."""
        key = hashlib.sha256(dumps([model, messages, params], sort_keys=True).encode()).hexdigest()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit, True
        answer = self._call(client or self.client, model, messages, params)
        with self._lock:
            self._cache[key] = answer
            self._new_cache[key] = (model, answer)
        return answer, False

    def _call(
        self,
        client: openai.OpenAI,
        model: str,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
    ) -> dict[str, Any]:
        client = client.with_options(max_retries=0)  # the retries are ours, and counted
        attempt = 0
        while True:
            try:
                with self._lock:
                    self._calls += 1
                with purpose("eval"), dataset_scope(EVAL_DATASET):
                    completion = client.chat.completions.create(
                        model=model,
                        messages=messages,  # type: ignore[arg-type]
                        **params,
                    )
                return _answer(completion)
            except Exception as exc:
                if not _retryable(exc) or attempt >= self.retries:
                    raise
                wait = _retry_after(exc)
                if wait is None:
                    wait = self.backoff * 2**attempt * (0.5 + random.random() / 2)
                attempt += 1
                with self._lock:
                    self._retries += 1
                time.sleep(min(wait, 60.0))

    # --- a run --------------------------------------------------------------------------------

    def run(self, model: str, dataset: Dataset | Sequence[Example], **params: Any) -> EvalResult:
        """Ask ``model`` each example's input (messages, and tools where the example has
        them) with ``params`` (temperature=0, ...), score the answers, store and return the run."""
        if not isinstance(model, str) or not model:
            raise ConfigurationError(f"model must be a model name, got {model!r}")
        if "messages" in params or "model" in params or params.get("stream"):
            raise ConfigurationError(
                "run() takes the call's other parameters; not messages, model, stream"
            )
        data = dataset if isinstance(dataset, Dataset) else Dataset("examples", list(dataset))
        examples = list(data)
        if not examples:
            raise ConfigurationError(f"dataset {data.name!r} has no examples to evaluate")
        store = self._store or data.store or Store()
        name = self.name or type(self).__name__
        self._load_cache(store)
        started = datetime.now(timezone.utc)
        self._calls = self._retries = 0
        out: TextIO | None = sys.stderr if self.progress is True else self.progress or None
        bar = _Bar(len(examples), f"{name} {model}", out)

        def one(position: int, example: Example) -> ExampleResult:
            result = self._example(position, example, model, params)
            bar.advance(result.status == "error")
            return result

        with concurrent.futures.ThreadPoolExecutor(self.concurrency) as pool:
            results = list(pool.map(one, range(len(examples)), examples))
        result = EvalResult(
            run_id=f"run-{started:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}",
            eval_name=name,
            model=model,
            dataset=data.name,
            params=dict(params),
            results=results,
            started_at=started,
            finished_at=datetime.now(timezone.utc),
            calls=self._calls,
            retries=self._retries,
            store=store,
        )
        _save(store, result, self._new_cache)
        self._new_cache = {}
        return result

    def _example(
        self, position: int, example: Example, model: str, params: dict[str, Any]
    ) -> ExampleResult:
        call_params = dict(params)
        if example.tools and "tools" not in call_params:
            call_params["tools"] = example.tools
        target = self.target(example)
        started = time.perf_counter()
        try:
            answer, cached = self._complete(model, example.messages, call_params)
            latency = None if cached else (time.perf_counter() - started) * 1000
            prediction = self.extract(answer)
        except Exception as exc:
            return ExampleResult(
                position,
                example.id,
                example.messages,
                target,
                None,
                None,
                status="error",
                error=f"{type(exc).__name__}: {exc}",
            )
        try:
            score = as_score(self.compare(prediction, target))
        except Exception as exc:
            return ExampleResult(
                position,
                example.id,
                example.messages,
                target,
                prediction,
                None,
                status="error",
                error=f"compare() raised {type(exc).__name__}: {exc}",
                cached=cached,
                latency_ms=latency,
            )
        return ExampleResult(
            position,
            example.id,
            example.messages,
            target,
            prediction,
            score.value,
            reason=score.reason,
            cached=cached,
            latency_ms=latency,
        )

    def _load_cache(self, store: Store) -> None:
        self._cache = {}
        if not self.use_cache or not store.path.exists():
            return
        rows = store.sql("SELECT key, answer FROM eval_cache").rows
        self._cache = {key: json.loads(answer) for key, answer in rows}


def _save(
    store: Store, result: EvalResult, cache: Mapping[str, tuple[str, dict[str, Any]]]
) -> None:
    low, high = result.ci95
    with store.transaction() as con:
        con.execute(
            "INSERT INTO eval_runs (id, eval, model, dataset, params, examples, scored, errors, "
            "accuracy, ci_low, ci_high, calls, retries, cached, started_at, finished_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                result.run_id,
                result.eval_name,
                result.model,
                result.dataset,
                dumps(result.params),
                len(result.results),
                result.n,
                result.errors,
                result.accuracy,
                low,
                high,
                result.calls,
                result.retries,
                result.cached,
                result.started_at,
                result.finished_at,
            ],
        )
        con.executemany(
            "INSERT INTO eval_results (run_id, position, call_id, messages, target, prediction, "
            "score, reason, status, error, cached, latency_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                [
                    result.run_id,
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
                for r in result.results
            ],
        )
        if cache:
            con.executemany(
                "INSERT OR REPLACE INTO eval_cache (key, model, answer) VALUES (?, ?, ?)",
                [[key, model, dumps(answer)] for key, (model, answer) in cache.items()],
            )


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
        "SELECT position, call_id, messages, target, prediction, score, reason, status, error, "
        "cached, latency_ms FROM eval_results WHERE run_id = ? ORDER BY position",
        [rid],
    ).rows
    results = [
        ExampleResult(
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
        for r in rows
    ]
    return EvalResult(
        rid,
        name,
        model,
        dataset,
        json.loads(params) if params else {},
        results,
        started,
        finished,
        calls or 0,
        retries or 0,
        store,
    )
