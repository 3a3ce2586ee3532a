"""What one example of an eval run gave: ``Score`` (what ``compare`` said) and ``ExampleResult``
(the question, the target, the answer and its score). Plain values, below everything else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._errors import ConfigurationError


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
