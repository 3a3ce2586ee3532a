"""OpenAI's fine-tuning API, or any server implementing it; and a retired service that did
(Anyscale Endpoints), kept so that code written against it gets a clear error."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError
from ._providers import field, host_name, plain, provider_errors
from ._types import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Event,
    JobRequest,
    JobState,
    ProviderError,
)
from ._types import timestamp as _time

if TYPE_CHECKING:
    import openai

_OPENAI_STATUS = {
    "validating_files": QUEUED,
    "queued": QUEUED,
    "running": RUNNING,
    "succeeded": SUCCEEDED,
    "failed": FAILED,
    "cancelled": CANCELLED,
}
# Hyperparameters OpenAI takes, per method (anything else is refused before the call).
_OPENAI_HYPERPARAMETERS = {
    "supervised": ("n_epochs", "batch_size", "learning_rate_multiplier"),
    "dpo": ("n_epochs", "batch_size", "learning_rate_multiplier", "beta"),
}


class OpenAIProvider:
    """OpenAI's fine-tuning API, or any server implementing it (``client.base_url``)."""

    def __init__(self, client: openai.OpenAI, name: str | None = None) -> None:
        self.client = client
        url = str(client.base_url)
        self.name = name or ("openai" if "api.openai.com" in url else host_name(url))

    def __repr__(self) -> str:
        return f"OpenAIProvider({self.name!r}, base_url={str(self.client.base_url)!r})"

    def upload(self, path: Path) -> str:
        with provider_errors(self.name), open(path, "rb") as fh:
            return str(self.client.files.create(file=fh, purpose="fine-tune").id)

    def create_job(self, request: JobRequest) -> JobState:
        method = request.method
        allowed = _OPENAI_HYPERPARAMETERS[method]
        unknown = sorted(set(request.hyperparameters) - set(allowed))
        if unknown:
            raise ConfigurationError(
                f"{self.name} takes the {method} hyperparameters {', '.join(allowed)}; "
                f"not {', '.join(unknown)}"
            )
        params: dict[str, Any] = {
            "model": request.base_model,
            "training_file": request.training_file,
            "method": {"type": method, method: {"hyperparameters": dict(request.hyperparameters)}},
        }
        for key, value in (
            ("validation_file", request.validation_file),
            ("suffix", request.suffix),
            ("seed", request.seed),
            ("metadata", dict(request.metadata) if request.metadata else None),
        ):
            if value is not None:
                params[key] = value
        with provider_errors(self.name):
            job = self.client.fine_tuning.jobs.create(**params)
        return self._state(job)

    def get_job(self, job_id: str) -> JobState:
        with provider_errors(self.name):
            return self._state(self.client.fine_tuning.jobs.retrieve(job_id))

    def list_events(self, job_id: str) -> list[Event]:
        with provider_errors(self.name):
            page = self.client.fine_tuning.jobs.list_events(job_id, limit=100)
        events = [
            Event(
                id=str(e.id),
                created_at=_time(e.created_at),
                level=str(e.level),
                message=str(e.message),
                data=plain(e.data),
            )
            for e in reversed(page.data)  # the API lists the newest first
        ]
        return sorted(events, key=lambda e: (e.created_at is None, e.created_at))

    def cancel_job(self, job_id: str) -> JobState:
        with provider_errors(self.name):
            return self._state(self.client.fine_tuning.jobs.cancel(job_id))

    def list_jobs(self, limit: int = 20) -> list[JobState]:
        with provider_errors(self.name):
            page = self.client.fine_tuning.jobs.list(limit=limit)
        return [self._state(job) for job in page.data]

    def _state(self, job: Any) -> JobState:
        method_obj = field(job, "method")
        method = field(method_obj, "type") or "supervised"
        hyper = field(field(method_obj, method), "hyperparameters") or field(job, "hyperparameters")
        error = field(job, "error")
        message = field(error, "message")
        code = field(error, "code")
        return JobState(
            id=str(job.id),
            provider=self.name,
            base_model=str(job.model),
            status=_OPENAI_STATUS.get(str(job.status), RUNNING),
            provider_status=str(job.status),
            fine_tuned_model=job.fine_tuned_model,
            error=f"{message} ({code})" if message and code else message or None,
            trained_tokens=job.trained_tokens,
            created_at=_time(job.created_at),
            finished_at=_time(job.finished_at),
            training_file=job.training_file,
            validation_file=job.validation_file,
            method=str(method),
            hyperparameters={k: v for k, v in plain(hyper).items() if v is not None},
        )


# --- retired services -------------------------------------------------------------------------

ANYSCALE_BASE_URL = "https://api.endpoints.anyscale.com/v1"


class RetiredProvider:
    """A provider at a retired service (Anyscale Endpoints): each call that cannot reach it
    says so, and names the providers to use instead."""

    def __init__(self, inner: OpenAIProvider) -> None:
        self.inner = inner
        self.name = inner.name

    def __repr__(self) -> str:
        return f"retired {self.inner!r}"

    @contextlib.contextmanager
    def _retired(self) -> Iterator[None]:
        try:
            yield
        except ProviderError as exc:
            raise ProviderError(
                f"Anyscale Endpoints ({self.inner.client.base_url}) was retired in 2024 and no "
                f"longer fine-tunes models ({exc}). Use Finetuner.for_together(), "
                f"Finetuner.for_openai(base_url=...) for another OpenAI-compatible service, or "
                f"Finetuner.for_local()"
            ) from exc

    def upload(self, path: Path) -> str:
        with self._retired():
            return self.inner.upload(path)

    def create_job(self, request: JobRequest) -> JobState:
        with self._retired():
            return self.inner.create_job(request)

    def get_job(self, job_id: str) -> JobState:
        with self._retired():
            return self.inner.get_job(job_id)

    def list_events(self, job_id: str) -> list[Event]:
        with self._retired():
            return self.inner.list_events(job_id)

    def cancel_job(self, job_id: str) -> JobState:
        with self._retired():
            return self.inner.cancel_job(job_id)

    def list_jobs(self, limit: int = 20) -> list[JobState]:
        with self._retired():
            return self.inner.list_jobs(limit)
