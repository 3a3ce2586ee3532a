"""The live comparison of a shadowed candidate with production (``finetuner_otel.shadow``).

Every call a shadow made is stored beside the production call it repeated (its own purpose,
``shadow``, never a training example; ``finetuner.shadow.of`` names the production call). Here
each pair is scored by an ``Eval`` (exact match unless another is given): the candidate's answer
against the production answer, or against the correction where feedback gave one. The result
accrues as one live eval run per dataset and candidate (``eval_runs``, id ``shadow-...``),
replaced as pairs arrive, with what a switch needs to know: the agreement and its Wilson
interval, by day and by prompt version, the paired test on corrected calls (production and
candidate both scored against the correction), latency p50/p95 and tokens beside production's.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .._errors import ConfigurationError
from ..store import Store
from ._builtin import ExactMatch
from ._eval import Eval
from ._records import save_run
from ._results import ExampleResult, as_score
from ._run import EvalResult
from ._stats import mcnemar_exact, wilson

_PAIRS = """
SELECT p.id, CAST(p.started_at AS DATE) AS day, p.prompt_version, p.messages, p.completion,
       f.correction, s.id, s.completion, s.status, s.error_type, s.duration_ms, p.duration_ms,
       coalesce(s.input_tokens, 0) + coalesce(s.output_tokens, 0),
       coalesce(p.input_tokens, 0) + coalesce(p.output_tokens, 0), s.started_at
FROM calls s
JOIN calls p ON p.trace_id || p.span_id = s.attributes->>'finetuner.shadow.of'
LEFT JOIN call_feedback f ON f.call_id = p.id
WHERE s.dataset = ? AND s.request_model = ?
  AND s.attributes->>'finetuner.purpose' = 'shadow'
ORDER BY p.started_at, p.id
"""


@dataclass(frozen=True)
class ShadowPair:
    """One production call and the candidate's answer to the same input."""

    call_id: str
    shadow_id: str
    day: str
    prompt_version: str | None
    score: float | None  # None: the candidate's call failed
    reason: str | None
    corrected: bool
    production_score: float | None  # against the correction; None where there is none
    candidate_latency_ms: float | None
    production_latency_ms: float | None
    candidate_tokens: int
    production_tokens: int
    error: str | None = None


def _percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile in milliseconds, to a tenth."""
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 1)


@dataclass
class ShadowReport:
    """The live comparison of ``candidate`` with production on ``dataset``."""

    dataset: str
    candidate: str
    pairs: list[ShadowPair]
    run_id: str
    eval_name: str = "exact"
    computed_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def scored(self) -> list[ShadowPair]:
        return [p for p in self.pairs if p.score is not None]

    @property
    def n(self) -> int:
        return len(self.scored)

    @property
    def errors(self) -> int:
        return len(self.pairs) - self.n

    @property
    def agreement(self) -> float:
        scored = self.scored
        return sum(p.score or 0.0 for p in scored) / len(scored) if scored else 0.0

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson(sum(p.score or 0.0 for p in self.scored), self.n)

    def _grouped(self, key: str) -> dict[str, dict[str, Any]]:
        groups: dict[str, list[ShadowPair]] = {}
        for pair in self.scored:
            groups.setdefault(str(getattr(pair, key)), []).append(pair)
        out = {}
        for name, pairs in sorted(groups.items()):
            agreed = sum(p.score or 0.0 for p in pairs)
            out[name] = {
                "n": len(pairs),
                "agreement": agreed / len(pairs),
                "ci95": wilson(agreed, len(pairs)),
            }
        return out

    @property
    def by_day(self) -> dict[str, dict[str, Any]]:
        return self._grouped("day")

    @property
    def by_prompt_version(self) -> dict[str, dict[str, Any]]:
        return self._grouped("prompt_version")

    @property
    def paired(self) -> dict[str, Any] | None:
        """On corrected calls, production and candidate each against the correction: how
        often each was right, and McNemar's exact p-value for the difference."""
        both = [p for p in self.scored if p.corrected and p.production_score is not None]
        if not both:
            return None
        prod = [(p.production_score or 0.0) >= 0.5 for p in both]
        cand = [(p.score or 0.0) >= 0.5 for p in both]
        b = sum(pr and not ca for pr, ca in zip(prod, cand, strict=True))
        c = sum(ca and not pr for pr, ca in zip(prod, cand, strict=True))
        return {
            "n": len(both),
            "production": sum(prod) / len(both),
            "candidate": sum(cand) / len(both),
            "p_value": mcnemar_exact(b, c),
        }

    def latency(self) -> dict[str, dict[str, float | None]]:
        cand = [p.candidate_latency_ms for p in self.scored if p.candidate_latency_ms is not None]
        prod = [p.production_latency_ms for p in self.pairs if p.production_latency_ms is not None]
        return {
            "candidate": {"p50": _percentile(cand, 50), "p95": _percentile(cand, 95)},
            "production": {"p50": _percentile(prod, 50), "p95": _percentile(prod, 95)},
        }

    def tokens(self) -> dict[str, int]:
        return {
            "candidate": sum(p.candidate_tokens for p in self.pairs),
            "production": sum(p.production_tokens for p in self.pairs),
        }

    @property
    def disagreements(self) -> list[str]:
        """The production calls the candidate answered differently, for review."""
        return [p.call_id for p in self.scored if (p.score or 0.0) < 0.5]

    def summary(self) -> str:
        low, high = self.ci95
        return (
            f"{self.candidate} beside production on {self.dataset}: agreement "
            f"{self.agreement:.1%} [95% CI {low:.1%}-{high:.1%}] over {self.n} calls "
            f"({self.errors} candidate errors, {len(self.disagreements)} disagreements)"
        )

    def to_dict(self) -> dict[str, Any]:
        low, high = self.ci95
        return {
            "dataset": self.dataset,
            "candidate": self.candidate,
            "run_id": self.run_id,
            "eval": self.eval_name,
            "calls": self.n,
            "errors": self.errors,
            "agreement": self.agreement,
            "ci_low": low,
            "ci_high": high,
            "by_day": self.by_day,
            "by_prompt_version": self.by_prompt_version,
            "paired": self.paired,
            "latency_ms": self.latency(),
            "tokens": self.tokens(),
            "disagreements": self.disagreements,
        }


def _message(text: Any) -> dict[str, Any]:
    value = json.loads(text) if isinstance(text, str) else text
    return value if isinstance(value, dict) else {"role": "assistant", "content": None}


def _score(evaluator: Eval, prediction: Any, target: Any) -> tuple[float, str | None]:
    score = as_score(evaluator.compare(prediction, target))
    return score.value, score.reason


def _pair(evaluator: Eval, row: tuple[Any, ...]) -> ShadowPair:
    (
        call_id,
        day,
        version,
        _messages,
        completion,
        correction,
        shadow_id,
        candidate,
        status,
        error_type,
        cand_ms,
        prod_ms,
        cand_tokens,
        prod_tokens,
        _started,
    ) = row
    target = evaluator.extract(_message(correction if correction is not None else completion))
    common: dict[str, Any] = {
        "call_id": call_id,
        "shadow_id": shadow_id,
        "day": str(day),
        "prompt_version": version,
        "corrected": correction is not None,
        "candidate_latency_ms": cand_ms,
        "production_latency_ms": prod_ms,
        "candidate_tokens": int(cand_tokens),
        "production_tokens": int(prod_tokens),
    }
    if status != "ok" or candidate is None:
        return ShadowPair(
            score=None, reason=None, production_score=None, error=error_type or status, **common
        )
    value, reason = _score(evaluator, evaluator.extract(_message(candidate)), target)
    production = None
    if correction is not None:
        production, _ = _score(evaluator, evaluator.extract(_message(completion)), target)
    return ShadowPair(score=value, reason=reason, production_score=production, **common)


def run_id(dataset: str, candidate: str) -> str:
    """The id of the live run of ``candidate`` on ``dataset``."""
    digest = hashlib.sha256(f"{dataset}\0{candidate}".encode()).hexdigest()[:16]
    return f"shadow-{digest}"


def shadow_report(
    store: Store, dataset: str, candidate: str, *, eval: Eval | None = None, save: bool = True
) -> ShadowReport:
    """Score every stored pair of ``candidate`` and production on ``dataset``; with ``save``,
    the live eval run is replaced by this one (readable with ``load_run(store, run_id)``)."""
    if not isinstance(dataset, str) or not isinstance(candidate, str) or not candidate:
        raise ConfigurationError("shadow_report() takes a dataset name and a candidate model")
    evaluator = eval if eval is not None else ExactMatch(None)  # type: ignore[arg-type]
    rows = store.sql(_PAIRS, [dataset, candidate]).rows if store.exists() else []
    report = ShadowReport(
        dataset,
        candidate,
        [_pair(evaluator, r) for r in rows],
        run_id(dataset, candidate),
        evaluator.name or type(evaluator).__name__,
    )
    if save and not store.read_only and report.pairs:
        save_run(store, _as_run(report, rows), {}, replace=True)
    return report


def _as_run(report: ShadowReport, rows: list[tuple[Any, ...]]) -> EvalResult:
    results = [
        ExampleResult(
            position=i,
            example_id=p.call_id,
            messages=json.loads(row[3] or "[]"),
            target=None,
            prediction=None,
            score=p.score,
            reason=p.reason,
            status="ok" if p.score is not None else "error",
            error=p.error,
            latency_ms=p.candidate_latency_ms,
        )
        for i, (p, row) in enumerate(zip(report.pairs, rows, strict=True))
    ]
    started = min(row[14] for row in rows)
    return EvalResult(
        run_id=report.run_id,
        eval_name=f"shadow:{report.eval_name}",
        model=report.candidate,
        dataset=report.dataset,
        params={"shadow": True},
        results=results,
        started_at=started,
        finished_at=report.computed_at,
    )
