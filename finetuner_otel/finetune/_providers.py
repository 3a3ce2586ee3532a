"""Fine-tuning providers: one small interface, and OpenAI's and Together's APIs behind it.

Both are driven through the ``openai`` SDK's client: OpenAI's fine-tuning API by its own
resources (so any server that implements that API works, given its ``base_url``), Together's
REST API by the client's plain ``get``/``post``, which bring the SDK's retries, timeouts and
error types without another HTTP library.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .._errors import ConfigurationError
from ._types import (
    CANCELLED,
    FAILED,
    FINAL,
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


@contextlib.contextmanager
def provider_errors(provider: str) -> Iterator[None]:
    """The SDK's errors as ProviderError, with the provider's message; ``retryable`` is set for
    rate limits, server errors and lost connections."""
    import openai

    try:
        yield
    except openai.APIStatusError as exc:
        raise ProviderError(
            f"{provider} answered {exc.status_code}: {_message(exc)}",
            retryable=exc.status_code == 429 or exc.status_code >= 500,
            status_code=exc.status_code,
        ) from exc
    except openai.APIConnectionError as exc:
        raise ProviderError(f"{provider} could not be reached: {exc}", retryable=True) from exc


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
        if body.get("message"):
            return str(body["message"])
    return str(getattr(exc, "message", exc))


def _field(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def host_name(base_url: str) -> str:
    parts = urlsplit(base_url)
    return parts.netloc or base_url


# --- OpenAI -----------------------------------------------------------------------------------

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
                data=_plain(e.data),
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
        method_obj = _field(job, "method")
        method = _field(method_obj, "type") or "supervised"
        hyper = _field(_field(method_obj, method), "hyperparameters") or _field(
            job, "hyperparameters"
        )
        error = _field(job, "error")
        message = _field(error, "message")
        code = _field(error, "code")
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
            hyperparameters={k: v for k, v in _plain(hyper).items() if v is not None},
        )


def _plain(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    dump = getattr(value, "model_dump", None)
    return dict(dump()) if callable(dump) else {}


# --- Together AI ------------------------------------------------------------------------------

TOGETHER_BASE_URL = "https://api.together.xyz/v1"
_TOGETHER_STATUS = {
    "pending": QUEUED,
    "queued": QUEUED,
    "running": RUNNING,
    "compressing": RUNNING,
    "uploading": RUNNING,
    "cancel_requested": RUNNING,
    "cancelled": CANCELLED,
    "error": FAILED,
    "user_error": FAILED,
    "completed": SUCCEEDED,
}
# Together's defaults for what its create request requires.
_TOGETHER_DEFAULTS: dict[str, Any] = {
    "n_epochs": 1,
    "learning_rate": 1e-5,
    "batch_size": "max",
    "warmup_ratio": 0.0,
    "max_grad_norm": 1.0,
    "weight_decay": 0.0,
}
_LORA_KEYS = ("lora_r", "lora_alpha", "lora_dropout", "lora_trainable_modules")
_LORA_DEFAULTS: dict[str, Any] = {
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "lora_trainable_modules": "all-linear",
}


class TogetherProvider:
    """Together AI's files and fine-tunes REST API (LoRA or full; SFT or DPO)."""

    name = "together"

    def __init__(self, client: openai.OpenAI) -> None:
        self.client = client

    def __repr__(self) -> str:
        return f"TogetherProvider(base_url={str(self.client.base_url)!r})"

    def _get(self, path: str) -> Any:
        with provider_errors(self.name):
            return self.client.get(path, cast_to=object)

    def _post(self, path: str, **kwargs: Any) -> Any:
        with provider_errors(self.name):
            return self.client.post(path, cast_to=object, **kwargs)

    def upload(self, path: Path) -> str:
        data = path.read_bytes()
        reply = self._post(
            "/files/upload",
            body={"purpose": "fine-tune", "file_name": path.name, "file_type": "jsonl"},
            files=[("file", (path.name, data, "application/octet-stream"))],
            options={"headers": {"Content-Type": "multipart/form-data"}},
        )
        file_id = _field(reply, "id")
        if not file_id:
            raise ProviderError(f"{self.name} answered the upload without a file id: {reply!r}")
        return str(file_id)

    def create_job(self, request: JobRequest) -> JobState:
        options = dict(request.hyperparameters)
        lora = options.pop("lora", True)
        lora_options = {k: options.pop(k) for k in _LORA_KEYS if k in options}
        beta = options.pop("beta", None)
        body: dict[str, Any] = {
            "training_file": request.training_file,
            "model": request.base_model,
            **_TOGETHER_DEFAULTS,
            **options,
        }
        if lora:
            body["training_type"] = {"type": "Lora", **_LORA_DEFAULTS, **lora_options}
        elif lora_options:
            raise ConfigurationError(f"{', '.join(lora_options)} apply to LoRA jobs (lora=True)")
        else:
            body["training_type"] = {"type": "Full"}
        if request.method == "dpo":
            body["training_method"] = {"method": "dpo", **({"dpo_beta": beta} if beta else {})}
        else:
            if beta is not None:
                raise ConfigurationError("beta applies to DPO jobs (method='dpo')")
            body["training_method"] = {"method": "sft", "train_on_inputs": "auto"}
        if request.validation_file is not None:
            body["validation_file"] = request.validation_file
            body.setdefault("n_evals", 1)
        if request.suffix is not None:
            body["suffix"] = request.suffix
        if request.seed is not None:
            body["random_seed"] = request.seed
        if request.metadata:
            raise ConfigurationError("Together jobs take no metadata; leave metadata out")
        return self._state(self._post("/fine-tunes", body=body))

    def get_job(self, job_id: str) -> JobState:
        return self._state(self._get(f"/fine-tunes/{job_id}"))

    def list_events(self, job_id: str) -> list[Event]:
        reply = self._get(f"/fine-tunes/{job_id}/events")
        return [self._event(e) for e in (_field(reply, "data") or [])]

    def cancel_job(self, job_id: str) -> JobState:
        return self._state(self._post(f"/fine-tunes/{job_id}/cancel"))

    def list_jobs(self, limit: int = 20) -> list[JobState]:
        reply = self._get("/fine-tunes")
        return [self._state(job) for job in (_field(reply, "data") or [])[:limit]]

    @staticmethod
    def _event(event: Mapping[str, Any]) -> Event:
        message = str(event.get("message") or "")
        created = str(event.get("created_at") or "")
        ident = hashlib.sha256(f"{created}\0{event.get('type')}\0{message}".encode()).hexdigest()
        data = {k: v for k, v in event.items() if k not in ("message", "created_at", "level")}
        if isinstance(event.get("step"), int) and isinstance(event.get("total_steps"), int):
            data["step"], data["total_steps"] = event["step"], event["total_steps"]
        return Event(
            id=ident[:24],
            created_at=_time(created),
            level=str(event.get("level") or "info").lower(),
            message=message,
            data=data,
        )

    def _state(self, job: Any) -> JobState:
        if not isinstance(job, Mapping) or not job.get("id"):
            raise ProviderError(f"{self.name} answered without a fine-tune job: {job!r}")
        status = str(job.get("status") or "pending")
        normalised = _TOGETHER_STATUS.get(status, RUNNING)
        events = [self._event(e) for e in job.get("events") or [] if isinstance(e, Mapping)]
        errors = [
            e.message
            for e in events
            if e.level == "error" or e.data.get("type") in ("JOB_ERROR", "job_error")
        ]
        method = (job.get("training_method") or {}).get("method", "sft")
        training_type = job.get("training_type") or {}
        hyper = {
            k: job[k]
            for k in ("n_epochs", "batch_size", "learning_rate", "n_checkpoints", "n_evals")
            if job.get(k) is not None
        }
        if training_type:
            hyper["lora"] = training_type.get("type") == "Lora"
        return JobState(
            id=str(job["id"]),
            provider=self.name,
            base_model=str(job.get("model") or ""),
            status=normalised,
            provider_status=status,
            fine_tuned_model=job.get("model_output_name") if normalised == SUCCEEDED else None,
            error=errors[-1] if errors and normalised == FAILED else None,
            trained_tokens=job.get("token_count"),
            created_at=_time(job.get("created_at")),
            finished_at=_time(job.get("updated_at")) if normalised in FINAL else None,
            training_file=job.get("training_file"),
            validation_file=job.get("validation_file"),
            method="dpo" if method == "dpo" else "supervised",
            hyperparameters=hyper,
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
