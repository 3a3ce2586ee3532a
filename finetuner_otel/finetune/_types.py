"""What every part of fine-tuning shares: the normalised statuses, a job's request, state and
events, the provider interface, and the provider's error. Imports nothing of the package's own,
so providers, ``Job``, the records and ``Finetuner`` all build on it without a circle."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .._errors import FinetunerError

# The normalised statuses; the last three are final.
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
)
FINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
METHODS = ("supervised", "dpo")


class ProviderError(FinetunerError):
    """The fine-tuning provider refused a request or could not be reached.

    ``retryable``: a rate limit, a server error or a lost connection, worth asking again;
    ``status_code``: the HTTP status the provider answered, where it answered one.
    """

    def __init__(
        self, message: str, *, retryable: bool = False, status_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code


@dataclass(frozen=True)
class Event:
    """One message of a job's log, as the provider sent it."""

    id: str
    created_at: datetime | None
    level: str
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobRequest:
    """What ``start_job`` asks a provider for."""

    base_model: str
    training_file: str
    validation_file: str | None = None
    method: str = "supervised"  # supervised | dpo
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)  # the provider's names
    suffix: str | None = None
    seed: int | None = None
    metadata: Mapping[str, str] | None = None


@dataclass(frozen=True)
class JobState:
    """What a provider says of a job at one moment."""

    id: str
    provider: str
    base_model: str
    status: str  # queued | running | succeeded | failed | cancelled
    provider_status: str  # the provider's own word, e.g. validating_files
    fine_tuned_model: str | None = None
    error: str | None = None
    trained_tokens: int | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    training_file: str | None = None
    validation_file: str | None = None
    method: str = "supervised"
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Provider(Protocol):
    """What a fine-tuning service must do for ``Finetuner``."""

    name: str

    def upload(self, path: Path) -> str:
        """Upload a JSONL training file; its file id."""
        ...

    def create_job(self, request: JobRequest) -> JobState: ...

    def get_job(self, job_id: str) -> JobState: ...

    def list_events(self, job_id: str) -> list[Event]:
        """The job's events, oldest first."""
        ...

    def cancel_job(self, job_id: str) -> JobState: ...

    def list_jobs(self, limit: int = 20) -> list[JobState]: ...


def timestamp(value: Any) -> datetime | None:
    """A provider's time (Unix seconds or ISO 8601 text) as an aware datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None
