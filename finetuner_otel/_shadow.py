"""Shadow calls on live traffic, and a guarded switch to the tuned model.

``finetuner_otel.shadow(candidate, ...)`` repeats a sampled share of the captured calls of some
datasets with the candidate model, off the user's thread: the same input and request options,
the model swapped, through the app's own client (or the one given). The candidate's calls are
stored beside the production calls they repeat (purpose ``shadow``: never training examples),
and ``finetuner_otel.eval.shadow_report`` (``finetuner shadow status``) scores them live.

``finetuner_otel.route(dataset, candidate, share=0.1, require_agreement=0.95)`` sends that
share of the dataset's calls to the candidate, only while the live run says it agrees: it
refuses to route until the lower bound of the agreement's 95% interval clears
``require_agreement``, stops by itself when the agreement falls below it, and answers a
candidate's failed call with the model asked for. Both are off by default; without them the
instrumentation changes nothing.

Settings for the launcher (``opentelemetry-instrument``): ``FINETUNER_SHADOW_MODEL`` (turns it
on), ``FINETUNER_SHADOW_DATASETS`` (comma-separated; all when unset), ``FINETUNER_SHADOW_SAMPLE``
(0.05), ``FINETUNER_SHADOW_MAX_PER_MINUTE``, ``FINETUNER_SHADOW_MAX_DAILY_TOKENS``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from opentelemetry import baggage
from opentelemetry import context as otel_context

from ._context import dataset as dataset_scope
from ._context import purpose
from ._errors import ConfigurationError
from ._fields import field
from ._semconv import PURPOSE_SHADOW
from .instrumentation import (
    SHADOW_OF_KEY,
    Extensions,
    OpenAIInstrumentor,
    Owner,
    ShadowRequest,
)

logger = logging.getLogger("finetuner_otel.shadow")
# Transport options the candidate's call does without: it is always a whole answer.
_TRANSPORT = ("stream", "stream_options", "extra_headers", "timeout")


@dataclass
class ShadowStats:
    """What a shadow did: ``offered`` completed calls of its datasets, ``sampled`` of them
    queued, ``sent`` to the candidate; the rest dropped (and why), and ``errors`` of the
    candidate's calls."""

    offered: int = 0
    sampled: int = 0
    sent: int = 0
    dropped_queue_full: int = 0
    dropped_rate: int = 0
    dropped_tokens: int = 0
    errors: int = 0
    tokens_today: int = 0


def _extensions() -> Extensions:
    options = OpenAIInstrumentor().capture_options
    if options is None:
        raise ConfigurationError(
            "shadow() and route() work on captured calls: call finetuner_otel.instrument() "
            "first (or run under opentelemetry-instrument)"
        )
    return options.extensions


def _number(name: str, value: Any, *, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (low <= value <= high):
        raise ConfigurationError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


class Shadow:
    """A candidate model called beside production on a sample of live calls."""

    def __init__(
        self,
        candidate: str,
        *,
        client: Any = None,
        datasets: Iterable[str] | None = None,
        sample: float = 0.05,
        max_per_minute: int | None = None,
        max_daily_tokens: int | None = None,
        queue_size: int = 64,
        seed: int | None = None,
    ) -> None:
        if not isinstance(candidate, str) or not candidate:
            raise ConfigurationError(f"the candidate is a model name, got {candidate!r}")
        self.candidate = candidate
        self.client = client
        self.datasets = frozenset(datasets) if datasets is not None else None
        self.sample = _number("sample", sample, low=0.0, high=1.0)
        self.max_per_minute = max_per_minute
        self.max_daily_tokens = max_daily_tokens
        self.stats = ShadowStats()
        self._random = random.Random(seed)
        self._queue: queue.Queue[ShadowRequest | None] = queue.Queue(maxsize=queue_size)
        self._sent_at: deque[float] = deque()
        self._day = datetime.now(timezone.utc).date()
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._run, name="finetuner-shadow", daemon=True)
        self._worker.start()

    # --- on the user's thread: cheap, never raises ----------------------------------------

    def samples(self, dataset: str) -> bool:
        if self.datasets is not None and dataset not in self.datasets:
            return False
        self.stats.offered += 1
        if self._random.random() >= self.sample:
            return False
        self.stats.sampled += 1
        return True

    def offer(self, request: ShadowRequest) -> None:
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            self.stats.dropped_queue_full += 1

    # --- on the worker ---------------------------------------------------------------------

    def _over_budget(self) -> bool:
        now = time.monotonic()
        sent = self._sent_at
        while sent and now - sent[0] >= 60.0:
            sent.popleft()
        if self.max_per_minute is not None and len(sent) >= self.max_per_minute:
            self.stats.dropped_rate += 1
            return True
        today = datetime.now(timezone.utc).date()
        if today != self._day:
            self._day, self.stats.tokens_today = today, 0
        if self.max_daily_tokens is not None and self.stats.tokens_today >= self.max_daily_tokens:
            self.stats.dropped_tokens += 1
            return True
        return False

    def _run(self) -> None:
        while True:
            request = self._queue.get()
            try:
                if request is None:
                    return
                if not self._over_budget():
                    self._sent_at.append(time.monotonic())
                    self._call(request)
            except Exception:  # the worker goes on, whatever one call did
                logger.debug("finetuner-otel: shadow call failed", exc_info=True)
            finally:
                self._queue.task_done()

    def _call(self, request: ShadowRequest) -> None:
        client = self.client if self.client is not None else request.client
        kwargs = {k: v for k, v in request.kwargs.items() if k not in _TRANSPORT}
        kwargs["model"] = self.candidate
        chat = request.api == "chat.completions"
        resource = client.chat.completions if chat else client.responses
        token = otel_context.attach(baggage.set_baggage(SHADOW_OF_KEY, request.call_ref))
        self.stats.sent += 1
        try:
            with dataset_scope(request.dataset), purpose(PURPOSE_SHADOW):
                result = resource.create(**kwargs)
        except Exception:
            self.stats.errors += 1  # recorded on the candidate's own span
            raise
        finally:
            otel_context.detach(token)
        usage = field(result, "usage")
        total = field(usage, "total_tokens") if usage is not None else None
        if isinstance(total, int):
            self.stats.tokens_today += total

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every queued call was made (or dropped); False if ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Offer no more calls; finish the queued ones (up to ``timeout``)."""
        with contextlib.suppress(ConfigurationError):
            _extensions().remove_shadow(self)
        self.close(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """End the worker once the queued calls are made (the instrumentation is going)."""
        if not self._worker.is_alive():
            return
        self.drain(timeout)
        self._queue.put(None)
        self._worker.join(timeout)

    def __enter__(self) -> Shadow:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def shadow(
    candidate_model: str,
    *,
    client: Any = None,
    datasets: Iterable[str] | None = None,
    sample: float = 0.05,
    max_per_minute: int | None = None,
    max_daily_tokens: int | None = None,
    queue_size: int = 64,
    seed: int | None = None,
) -> Shadow:
    """Call ``candidate_model`` beside production on a ``sample`` share of the completed calls
    of ``datasets`` (all when None), on a bounded background worker; calls over
    ``max_per_minute`` or ``max_daily_tokens`` (the candidate's usage, per UTC day), or beyond a
    full queue, are dropped and counted in ``.stats``. ``client``: the OpenAI client for the
    candidate (default: the client of each production call). ``.stop()`` ends it."""
    extensions = _extensions()
    hook = Shadow(
        candidate_model,
        client=client,
        datasets=datasets,
        sample=sample,
        max_per_minute=max_per_minute,
        max_daily_tokens=max_daily_tokens,
        queue_size=queue_size,
        seed=seed,
    )
    extensions.add_shadow(hook)
    return hook


def shadow_from_environment(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """``shadow()``'s arguments from ``FINETUNER_SHADOW_*``, or None when it is not asked for."""
    model = environ.get("FINETUNER_SHADOW_MODEL", "").strip()
    if not model:
        return None
    out: dict[str, Any] = {"candidate_model": model}
    names = environ.get("FINETUNER_SHADOW_DATASETS", "").strip()
    if names:
        out["datasets"] = [n.strip() for n in names.split(",") if n.strip()]
    for key, name, kind in (
        ("FINETUNER_SHADOW_SAMPLE", "sample", float),
        ("FINETUNER_SHADOW_MAX_PER_MINUTE", "max_per_minute", int),
        ("FINETUNER_SHADOW_MAX_DAILY_TOKENS", "max_daily_tokens", int),
    ):
        raw = environ.get(key, "").strip()
        if raw:
            try:
                out[name] = kind(raw)
            except ValueError:
                raise ConfigurationError(f"{key} must be a {kind.__name__}, got {raw!r}") from None
    return out


class Route:
    """Sends ``share`` of ``dataset``'s calls to ``candidate`` while the live shadow run says it
    agrees with production often enough (see ``route``)."""

    def __init__(
        self,
        dataset: str,
        candidate: str,
        *,
        share: float,
        require_agreement: float,
        store: Any,
        eval: Any = None,
        check_every: float | None = 60.0,
        seed: int | None = None,
    ) -> None:
        self.dataset = dataset
        self.candidate = candidate
        self.share = _number("share", share, low=0.0, high=1.0)
        self.require_agreement = _number("require_agreement", require_agreement, low=0, high=1)
        self.store = store
        self.eval = eval
        self.owner: Owner | None = None
        self.active = False
        self.reason = "not checked yet"
        self.routed = 0
        self.report: Any = None
        self._random = random.Random(seed)
        self._stopped = threading.Event()
        self._checker: threading.Thread | None = None
        if check_every is not None:
            self._checker = threading.Thread(
                target=self._check_every, args=(check_every,), name="finetuner-route", daemon=True
            )

    def choose(self, dataset: str, model: Any) -> str | None:
        if not self.active or dataset != self.dataset or model == self.candidate:
            return None
        if self._random.random() >= self.share:
            return None
        self.routed += 1
        return self.candidate

    def refresh(self) -> bool:
        """Check the live agreement now: route while its lower 95% bound is at least
        ``require_agreement``; stop once the agreement itself falls below it."""
        from .eval import shadow_report

        owner = self.owner
        if owner is not None:
            owner.flush()  # the shadow calls made so far, into the store
        report = shadow_report(self.store, self.dataset, self.candidate, eval=self.eval)
        self.report = report
        low, _ = report.ci95
        bar = self.require_agreement
        if report.n == 0:
            self.active, self.reason = False, "no shadow calls scored yet: run shadow() first"
        elif self.active and report.agreement < bar:
            self.active = False
            self.reason = f"withdrawn: live agreement {report.agreement:.1%} fell below {bar:.1%}"
        elif not self.active and low < bar:
            self.reason = (
                f"refused: agreement {report.agreement:.1%}, lower 95% bound {low:.1%} < "
                f"{bar:.1%} over {report.n} calls"
            )
        else:
            self.active = True
            self.reason = (
                f"routing {self.share:.0%}: agreement {report.agreement:.1%}, lower 95% bound "
                f"{low:.1%} >= {bar:.1%} over {report.n} calls"
            )
        return self.active

    def _check_every(self, seconds: float) -> None:
        while not self._stopped.wait(seconds):
            try:
                self.refresh()
            except Exception:  # a check that fails leaves the route as it was
                logger.warning("finetuner-otel: route check failed", exc_info=True)

    def stop(self) -> None:
        """Route nothing more."""
        with contextlib.suppress(ConfigurationError):
            _extensions().remove_route(self)
        self.close()

    def close(self) -> None:
        self.active = False
        self.reason = "stopped"
        self._stopped.set()

    def __enter__(self) -> Route:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def route(
    dataset: str,
    candidate_model: str,
    *,
    share: float = 0.1,
    require_agreement: float = 0.95,
    store: Any = None,
    eval: Any = None,
    check_every: float | None = 60.0,
    seed: int | None = None,
) -> Route:
    """Send ``share`` of ``dataset``'s calls to ``candidate_model`` through the app's own
    client (the model swapped), while the live shadow run agrees: refused until the lower
    bound of the agreement's 95% interval is at least ``require_agreement``, withdrawn by itself
    when the agreement falls below it (checked every ``check_every`` seconds, and by
    ``.refresh()``). A candidate's call that fails is answered by the model asked for. Routed
    calls are tagged ``finetuner.routed_from``; ``.active`` and ``.reason`` say where it stands,
    ``.stop()`` ends it."""
    extensions = _extensions()
    owner = extensions.owner
    if store is None:  # the store the calls go to: instrument()'s, else FINETUNER_DB's
        from .store import Store  # DuckDB loads with the first read, not with capture

        store = owner.open_store() if owner is not None else Store()
    hook = Route(
        dataset,
        candidate_model,
        share=share,
        require_agreement=require_agreement,
        store=store,
        eval=eval,
        check_every=check_every,
        seed=seed,
    )
    hook.owner = owner
    hook.refresh()
    if not hook.active:
        logger.warning("finetuner-otel: route(%r, %r) %s", dataset, candidate_model, hook.reason)
    extensions.add_route(hook)
    if hook._checker is not None:
        hook._checker.start()
    return hook


def start_from_environment() -> Shadow | None:
    """``FINETUNER_SHADOW_MODEL`` (and the other ``FINETUNER_SHADOW_*``): start the shadow it
    asks for, for the instrumentation just set up; None when it asks for none."""
    import os

    arguments = shadow_from_environment(os.environ)
    return shadow(**arguments) if arguments is not None else None
