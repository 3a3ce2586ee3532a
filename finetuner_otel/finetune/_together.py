"""Together AI's files and fine-tunes REST API (LoRA or full; SFT or DPO), through the openai
SDK's client (its plain ``get``/``post``: the SDK's retries, timeouts and error types)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError
from ._providers import field, provider_errors
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
        file_id = field(reply, "id")
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
        return [self._event(e) for e in (field(reply, "data") or [])]

    def cancel_job(self, job_id: str) -> JobState:
        return self._state(self._post(f"/fine-tunes/{job_id}/cancel"))

    def list_jobs(self, limit: int = 20) -> list[JobState]:
        reply = self._get("/fine-tunes")
        return [self._state(job) for job in (field(reply, "data") or [])[:limit]]

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
