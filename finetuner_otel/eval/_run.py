"""``EvalResult``: a finished run, what it scored and how sure; ``Comparison``: two runs paired on
the examples both scored, with the test that says whether the difference is real."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .._errors import ConfigurationError
from ..store import Store
from ._report import write_report
from ._results import ExampleResult
from ._stats import mcnemar_exact, paired_interval, sign_flip_test, wilson


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
    # --- issue 22: leakage from the model's training snapshot (eval/_leakage.py) ---
    leakage: dict[str, Any] | None = None

    @property
    def leaked(self) -> frozenset[str]:
        """The ids of the examples whose input is in the model's training snapshot."""
        return frozenset((self.leakage or {}).get("examples", {}))

    @property
    def clean(self) -> list[ExampleResult]:
        """The scored examples that did not leak from training."""
        leaked = self.leaked
        return [r for r in self.scored if r.example_id not in leaked]

    @property
    def accuracy_without_leaked(self) -> float:
        clean = self.clean
        return sum(r.score or 0.0 for r in clean) / len(clean) if clean else 0.0

    def _leakage_summary(self) -> str:
        if self.leakage is None:
            return ""
        leaked = sum(r.example_id in self.leaked for r in self.scored)
        return (
            f"; {leaked} examples leaked from training snapshot "
            f"{self.leakage['training_snapshot'][:12]} ({self.leakage['exact']} exact, "
            f"{self.leakage['near']} near): accuracy without them "
            f"{self.accuracy_without_leaked:.1%} over {len(self.clean)}"
        )

    # --- end issue 22 ---

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
            + self._leakage_summary()  # issue 22
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
