"""``Job`` alone, on a provider that keeps its jobs in memory (fast: no server, no store)."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest

from finetuner_otel.finetune import (
    Event,
    Job,
    JobFailedError,
    JobRequest,
    JobState,
    Provider,
    ProviderError,
)


class ScriptedProvider:
    """A provider whose job goes through ``statuses``, one per ``get_job``; ``failures`` are
    raised first, one per call."""

    name = "scripted"

    def __init__(self, statuses: list[str], failures: list[ProviderError] | None = None) -> None:
        self.statuses = statuses
        self.failures = list(failures or [])
        self.reads = 0

    def _state(self, status: str) -> JobState:
        final = {"succeeded": "succeeded", "failed": "failed", "cancelled": "cancelled"}
        return JobState(
            id="ftjob-1",
            provider=self.name,
            base_model="base",
            status=final.get(status, "running"),
            provider_status=status,
            fine_tuned_model="tuned" if status == "succeeded" else None,
            error="out of memory" if status == "failed" else None,
        )

    def upload(self, path: Path) -> str:
        return "file-1"

    def create_job(self, request: JobRequest) -> JobState:
        return self._state(self.statuses[0])

    def get_job(self, job_id: str) -> JobState:
        if self.failures:
            raise self.failures.pop(0)
        status = self.statuses[min(self.reads, len(self.statuses) - 1)]
        self.reads += 1
        return self._state(status)

    def list_events(self, job_id: str) -> list[Event]:
        step = min(self.reads, 4)
        return [
            Event(f"e{i}", None, "info", f"Step {i}/4", {"step": i, "total_steps": 4})
            for i in range(1, step + 1)
        ]

    def cancel_job(self, job_id: str) -> JobState:
        return self._state("cancelled")

    def list_jobs(self, limit: int = 20) -> list[JobState]:
        return []


def _job(provider: ScriptedProvider, changes: list[JobState]) -> Job:
    assert isinstance(provider, Provider)
    return Job(provider.create_job(JobRequest("base", "file-1")), provider, changes.append)


def test_each_new_state_goes_to_the_callback_once() -> None:
    provider = ScriptedProvider(["queued", "queued", "running", "succeeded"])
    changes: list[JobState] = []
    job = _job(provider, changes)
    log = io.StringIO()
    assert job.wait(poll=0, progress=log, sleep=lambda s: None) is job
    assert [s.provider_status for s in changes] == ["running", "succeeded"]
    assert (job.status, job.fine_tuned_model, job.provider) == ("succeeded", "tuned", "scripted")
    assert "[info] Step 4/4" in log.getvalue() and "step 4/4" in log.getvalue()


def test_a_job_has_its_fields_and_nothing_else() -> None:
    job = _job(ScriptedProvider(["queued"]), [])
    state = job.state
    for name in ("id", "base_model", "provider_status", "error", "trained_tokens", "method"):
        assert getattr(job, name) == getattr(state, name)
    assert dict(job.hyperparameters) == {}
    with pytest.raises(AttributeError):
        job.fine_tuned_modle  # type: ignore[attr-defined]  # noqa: B018


def test_the_method_asked_for_is_kept_when_the_provider_does_not_say() -> None:
    provider = ScriptedProvider(["queued", "running"])
    changes: list[JobState] = []
    job = Job(
        replace(provider.create_job(JobRequest("b", "f")), method="dpo"), provider, changes.append
    )
    job.refresh()  # queued, as it was: no change
    assert changes == []
    job.refresh()  # running
    assert job.method == "dpo" and [s.method for s in changes] == ["dpo"]


def test_retryable_errors_back_off_and_others_end_the_wait() -> None:
    busy = ProviderError("scripted answered 503: busy", retryable=True, status_code=503)
    provider = ScriptedProvider(["queued", "succeeded"], failures=[busy, busy])
    delays: list[float] = []
    job = _job(provider, [])
    job.wait(poll=1, progress=False, sleep=delays.append)
    assert delays == [2, 4, 1]
    refused = ProviderError("scripted answered 400: no such job", status_code=400)
    failing = _job(ScriptedProvider(["queued"], failures=[refused]), [])
    with pytest.raises(ProviderError, match="no such job"):
        failing.wait(poll=0, progress=False, sleep=lambda s: None)


def test_a_failed_job_raises_unless_told_not_to() -> None:
    job = _job(ScriptedProvider(["queued", "failed"]), [])
    with pytest.raises(JobFailedError, match="ftjob-1 failed: out of memory") as failure:
        job.wait(poll=0, progress=False, sleep=lambda s: None)
    assert failure.value.job is job
    assert job.wait(poll=0, progress=False, raise_on_failure=False).error == "out of memory"
