"""``Job``: one fine-tuning job on any provider, with its status normalised."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TextIO

from .._errors import FinetunerError

if TYPE_CHECKING:
    from ._finetuner import Finetuner

# The normalised statuses; the last three are final.
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
)
FINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})


class JobFailedError(FinetunerError):
    """``wait()`` saw the job end as failed or cancelled (``.job`` has the details)."""

    def __init__(self, message: str, job: Job) -> None:
        super().__init__(message)
        self.job = job


class ProviderError(FinetunerError):
    """The fine-tuning provider refused a request or could not be reached."""


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


class Job:
    """A fine-tuning job: ``status`` asks the provider afresh; ``wait()`` follows it to the end.

    Its other fields are those of the latest answer (``refresh()`` gets a new one).
    """

    def __init__(self, state: JobState, finetuner: Finetuner) -> None:
        self._state = state
        self._finetuner = finetuner

    def __repr__(self) -> str:
        s = self._state
        model = f", fine_tuned_model={s.fine_tuned_model!r}" if s.fine_tuned_model else ""
        return f"Job({s.id!r}, provider={s.provider!r}, status={s.status!r}{model})"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._state, name)

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

    def refresh(self) -> Job:
        self._update(self._finetuner.provider.get_job(self._state.id))
        return self

    def _update(self, state: JobState) -> None:
        previous = self._state
        if state.method == "supervised" and previous.method != "supervised":
            state = replace(state, method=previous.method)
        self._state = state
        self._finetuner._record_state(state, changed=state != previous)

    def events(self) -> list[Event]:
        """The job's log, oldest first."""
        return self._finetuner.provider.list_events(self._state.id)

    def cancel(self) -> Job:
        self._update(self._finetuner.provider.cancel_job(self._state.id))
        return self

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
        (``progress``: True for stderr, a file, or False). A rate limit or server error while
        polling is retried with exponential backoff, up to a minute apart; it never ends the
        wait. Interrupted (Ctrl-C), the job goes on at the provider: pick it up again with
        ``Finetuner...get_job(job_id).wait()``. ``raise_on_failure``: raise JobFailedError if
        it ends failed or cancelled. ``timeout``: give up after so many seconds (TimeoutError).
        """
        out: TextIO | None = sys.stderr if progress is True else progress or None
        reporter = _Progress(out)
        seen: set[str] = set()
        started = time.monotonic()
        delay = poll
        try:
            while True:
                try:
                    self.refresh()
                    for event in self.events():
                        if event.id not in seen:
                            seen.add(event.id)
                            reporter.event(event)
                    delay = poll
                except ProviderError as exc:
                    if not getattr(exc, "retryable", False):
                        raise
                    delay = min(max(delay * 2, poll, 1.0), 60.0)
                    reporter.line(f"{exc}; retrying in {delay:.0f}s")
                reporter.status(self._state)
                if self.done:
                    break
                if timeout is not None and time.monotonic() - started + delay > timeout:
                    raise TimeoutError(
                        f"job {self._state.id} is still {self._state.provider_status} after "
                        f"{timeout:g}s; wait() again to go on following it"
                    )
                sleep(delay)
        except KeyboardInterrupt:
            reporter.line(
                f"stopped following {self._state.id}; it goes on at {self._state.provider}. "
                f"Resume with .get_job({self._state.id!r}).wait()"
            )
            raise
        finally:
            reporter.close()
        if raise_on_failure and self._state.status != SUCCEEDED:
            reason = f": {self._state.error}" if self._state.error else ""
            raise JobFailedError(f"job {self._state.id} {self._state.status}{reason}", self)
        return self


class _Progress:
    """The status line (redrawn in place on a terminal) and the provider's events."""

    def __init__(self, out: TextIO | None) -> None:
        self.out = out
        self.tty = bool(out is not None and getattr(out, "isatty", lambda: False)())
        self.last = ""
        self.step: tuple[int, int] | None = None

    def event(self, event: Event) -> None:
        step, total = event.data.get("step"), event.data.get("total_steps")
        if isinstance(step, int) and isinstance(total, int) and total > 0:
            self.step = (step, total)
        self.line(f"[{event.level}] {event.message}")

    def status(self, state: JobState) -> None:
        text = f"{state.id}: {state.provider_status}"
        if self.step is not None:
            step, total = self.step
            filled = round(20 * min(step, total) / total)
            text += f" [{'#' * filled}{'.' * (20 - filled)}] step {step}/{total}"
        if text != self.last:
            self._write(text, transient=True)
            self.last = text

    def line(self, text: str) -> None:
        self._write(text, transient=False)

    def _write(self, text: str, transient: bool) -> None:
        if self.out is None:
            return
        if self.tty:
            self.out.write("\r\x1b[2K" + text + ("" if transient else "\n"))
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.out is not None and self.tty and self.last:
            self.out.write("\n")
            self.out.flush()
