"""``Eval``: score a model on held-out examples, calling it concurrently, with retries and a
cache; the run it gives is an ``EvalResult``, stored with its rows."""

from __future__ import annotations

import concurrent.futures
import hashlib
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .._context import dataset as dataset_scope
from .._context import purpose
from .._cot import split_rationale
from .._errors import ConfigurationError
from .._json import dumps
from .._messages import message_text
from .._progress import Progress
from .._retry import retryable, wait_before
from ..store import Dataset, Example, Store
from ._leakage import check_leakage  # issue 22
from ._records import load_cache, save_run
from ._results import ExampleResult, Score, as_score
from ._run import EvalResult

if TYPE_CHECKING:
    import openai

EVAL_DATASET = "eval"  # the dataset eval calls are recorded under (never trained on)


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
    examples. Each run and its rows are stored: ``eval_runs``, ``eval_results``. ``progress``:
    a bar on stderr when it is a terminal (True), on the file given, or none (False).
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
                if not retryable(exc) or attempt >= self.retries:
                    raise
                wait = wait_before(exc, attempt, self.backoff)
                attempt += 1
                with self._lock:
                    self._retries += 1
                time.sleep(min(wait, 60.0))

    # --- a run --------------------------------------------------------------------------------

    def run(self, model: str, dataset: Dataset | Sequence[Example], **params: Any) -> EvalResult:
        """Ask ``model`` each example's input (messages, and tools where the example has
        them) with ``params`` (temperature=0, ...), score the answers, store and return the run."""
        data = _checked(model, dataset, params)
        examples = list(data)
        store = self._store or (data.store if isinstance(data.store, Store) else None) or Store()
        name = self.name or type(self).__name__
        self._cache = load_cache(store) if self.use_cache else {}
        started = datetime.now(timezone.utc)
        self._calls = self._retries = 0
        with Progress(
            self.progress, f"{name} {model}", total=len(examples), unit=" examples"
        ) as display:

            def one(position: int, example: Example) -> ExampleResult:
                result = self._example(position, example, model, params)
                display.advance(error=result.status == "error")
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
            leakage=check_leakage(store, model, examples),  # issue 22
        )
        save_run(store, result, self._new_cache)
        self._new_cache = {}
        return result

    def _example(
        self, position: int, example: Example, model: str, params: dict[str, Any]
    ) -> ExampleResult:
        call_params = dict(params)
        if example.tools and "tools" not in call_params:
            call_params["tools"] = example.tools
        asked = ExampleResult(
            position, example.id, example.messages, self.target(example), None, None
        )
        started = time.perf_counter()
        try:
            answer, cached = self._complete(model, example.messages, call_params)
            latency = None if cached else (time.perf_counter() - started) * 1000
            prediction = self.extract(answer)
        except Exception as exc:
            return replace(asked, status="error", error=f"{type(exc).__name__}: {exc}")
        answered = replace(asked, prediction=prediction, cached=cached, latency_ms=latency)
        try:
            score = as_score(self.compare(prediction, asked.target))
        except Exception as exc:
            error = f"compare() raised {type(exc).__name__}: {exc}"
            return replace(answered, status="error", error=error)
        return replace(answered, score=score.value, reason=score.reason)


def _checked(
    model: str, dataset: Dataset | Sequence[Example], params: Mapping[str, Any]
) -> Dataset:
    """What ``run`` was given, checked: the examples as a Dataset, never an empty one."""
    if not isinstance(model, str) or not model:
        raise ConfigurationError(f"model must be a model name, got {model!r}")
    if "messages" in params or "model" in params or params.get("stream"):
        raise ConfigurationError(
            "run() takes the call's other parameters; not messages, model, stream"
        )
    data = dataset if isinstance(dataset, Dataset) else Dataset("examples", list(dataset))
    if len(data) == 0:
        raise ConfigurationError(f"dataset {data.name!r} has no examples to evaluate")
    return data
