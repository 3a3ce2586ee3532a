"""``Job``: one fine-tuning job on any provider, with its status normalised."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, TextIO

from .._errors import FinetunerError
from .._progress import Progress
from ._types import FINAL, SUCCEEDED, Event, JobState, Provider, ProviderError

# A job's bar, once the provider's events tell the steps: "ftjob-1: running |####  | step 3/9"
_STEP_BAR = "{desc} |{bar:20}| step {n}/{total}"


class JobFailedError(FinetunerError):
    """``wait()`` saw the job end as failed or cancelled (``.job`` has the details)."""

    def __init__(self, message: str, job: Job) -> None:
        super().__init__(message)
        self.job = job


class Job:
    """A fine-tuning job: ``status`` asks the provider afresh; ``wait()`` follows it to the end.

    Its other fields are those of the latest answer (``refresh()`` gets a new one). Each new
    answer is handed to ``on_change`` (``Finetuner`` records it in the store).
    """

    def __init__(
        self,
        state: JobState,
        provider: Provider,
        on_change: Callable[[JobState], None] | None = None,
    ) -> None:
        self._state = state
        self._provider = provider
        self._on_change = on_change

    def __repr__(self) -> str:
        s = self._state
        model = f", fine_tuned_model={s.fine_tuned_model!r}" if s.fine_tuned_model else ""
        return f"Job({s.id!r}, provider={s.provider!r}, status={s.status!r}{model})"

    # --- the latest answer --------------------------------------------------------------------

    @property
    def state(self) -> JobState:
        """The latest answer, without asking again."""
        return self._state

    @property
    def status(self) -> str:
        """queued, running, succeeded, failed or cancelled: asked of the provider now."""
        return self.refresh().state.status

    @property
    def done(self) -> bool:
        return self._state.status in FINAL

    @property
    def id(self) -> str:
        return self._state.id

    @property
    def provider(self) -> str:
        """The provider's name (``Finetuner.provider`` is the provider itself)."""
        return self._state.provider

    @property
    def base_model(self) -> str:
        return self._state.base_model

    @property
    def provider_status(self) -> str:
        """The provider's own word for the status, e.g. validating_files."""
        return self._state.provider_status

    @property
    def fine_tuned_model(self) -> str | None:
        """The model to call once the job succeeded (for a local job, the adapter's path)."""
        return self._state.fine_tuned_model

    @property
    def error(self) -> str | None:
        return self._state.error

    @property
    def trained_tokens(self) -> int | None:
        return self._state.trained_tokens

    @property
    def created_at(self) -> datetime | None:
        return self._state.created_at

    @property
    def finished_at(self) -> datetime | None:
        return self._state.finished_at

    @property
    def training_file(self) -> str | None:
        return self._state.training_file

    @property
    def validation_file(self) -> str | None:
        return self._state.validation_file

    @property
    def method(self) -> str:
        return self._state.method

    @property
    def hyperparameters(self) -> Mapping[str, Any]:
        return self._state.hyperparameters

    # --- asking the provider ------------------------------------------------------------------

    def refresh(self) -> Job:
        self._update(self._provider.get_job(self._state.id))
        return self

    def events(self) -> list[Event]:
        """The job's log, oldest first."""
        return self._provider.list_events(self._state.id)

    def cancel(self) -> Job:
        self._update(self._provider.cancel_job(self._state.id))
        return self

    def _update(self, state: JobState) -> None:
        previous = self._state
        if state.method == "supervised" and previous.method != "supervised":
            state = replace(state, method=previous.method)  # not every provider says
        self._state = state
        if state != previous and self._on_change is not None:
            self._on_change(state)

    def wait(
        self,
        *,
        poll: float = 10.0,
        timeout: float | None = None,
        progress: bool | TextIO = True,
        raise_on_failure: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Job:
        """Follow the job until it succeeds, fails or is cancelled; returns it.

        Polls every ``poll`` seconds, showing the status and the provider's new events
        (``progress``: True for stderr when it is a terminal, a file, or False). A rate limit or
        server error while polling is retried with exponential backoff, up to a minute apart;
        it never ends the wait. Interrupted (Ctrl-C), the job goes on at the provider: pick it
        up again with ``Finetuner...get_job(job_id).wait()``. ``raise_on_failure``: raise
        JobFailedError if it ends failed or cancelled. ``timeout``: give up after so many
        seconds (TimeoutError).
        """
        with Progress(progress, self._label(), bar_format=_STEP_BAR) as display:
            try:
                self._follow(display, poll, timeout, sleep)
            except KeyboardInterrupt:
                display.note(
                    f"stopped following {self.id}; it goes on at {self.provider}. "
                    f"Resume with .get_job({self.id!r}).wait()"
                )
                raise
        if raise_on_failure and self._state.status != SUCCEEDED:
            reason = f": {self._state.error}" if self._state.error else ""
            raise JobFailedError(f"job {self.id} {self._state.status}{reason}", self)
        return self

    def _follow(
        self,
        display: Progress,
        poll: float,
        timeout: float | None,
        sleep: Callable[[float], None],
    ) -> None:
        """Poll until the job is done: the news shown on ``display``, errors worth retrying
        backed off (doubling, from ``poll`` to a minute)."""
        seen: set[str] = set()
        steps = _Steps()
        started = time.monotonic()
        delay = poll
        while True:
            try:
                self.refresh()
                for event in self.events():
                    if event.id not in seen:
                        seen.add(event.id)
                        steps.read(event)
                        display.note(f"[{event.level}] {event.message}")
                delay = poll
            except ProviderError as exc:
                if not exc.retryable:
                    raise
                delay = min(max(delay * 2, poll, 1.0), 60.0)
                display.note(f"{exc}; retrying in {delay:.0f}s")
            display.show(self._label(), done=steps.step, total=steps.total)
            if self.done:
                return
            if timeout is not None and time.monotonic() - started + delay > timeout:
                raise TimeoutError(
                    f"job {self.id} is still {self.provider_status} after {timeout:g}s; "
                    f"wait() again to go on following it"
                )
            sleep(delay)

    def _label(self) -> str:
        return f"{self.id}: {self.provider_status}"

    def serve(self, **options: Any) -> Any:
        """Serve a succeeded local job's adapter (and its base model) on an OpenAI-compatible
        endpoint; the running server (``.url``, ``.model``). See ``finetune.serve``."""
        from ._serve import serve

        return serve(self, **options)


class _Steps:
    """How far training is, as the provider's events say (``step`` of ``total_steps``)."""

    def __init__(self) -> None:
        self.step: int | None = None
        self.total: int | None = None

    def read(self, event: Event) -> None:
        step, total = event.data.get("step"), event.data.get("total_steps")
        if isinstance(step, int) and isinstance(total, int) and total > 0:
            self.step, self.total = min(step, total), total
