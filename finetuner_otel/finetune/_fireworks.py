"""Fireworks AI's datasets and fine-tuning jobs (supervised and DPO, LoRA), through the openai
SDK's client (its plain ``get``/``post``: the SDK's retries, timeouts and error types).

The wire format, from Fireworks' REST API reference (docs.fireworks.ai/api-reference):

- a dataset is created (``POST /v1/accounts/{account}/datasets`` with ``datasetId`` and
  ``dataset: {userUploaded: {}, exampleCount}``), then its file is uploaded
  (``POST .../datasets/{id}:upload``, multipart ``file``); jobs name it by its resource name
  ``accounts/{account}/datasets/{id}``, which is the file id here.
- ``POST .../supervisedFineTuningJobs`` (``dataset``, ``baseModel``, ``epochs``,
  ``learningRate``, ``loraRank``, ``batchSize``, ``maxContextLength``, ``evaluationDataset``,
  ``displayName``, ``earlyStop``) and ``POST .../dpoJobs`` (``dataset`` and the same settings in
  ``trainingConfig``; ``lossConfig.klBeta``); a job is read at ``GET .../{collection}/{id}`` and
  cancelled at ``POST .../{collection}/{id}:cancel``. A job's id here is ``{collection}/{id}``
  (``supervisedFineTuningJobs/abc``), so that ``get_job`` knows where to look.
- a job's ``state`` is a ``JOB_STATE_*`` word (mapped below), ``status.message`` says why it
  failed, ``outputModel`` names the model, ``jobProgress`` how far it is.
"""

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

FIREWORKS_BASE_URL = "https://api.fireworks.ai/v1"
SFT, DPO = "supervisedFineTuningJobs", "dpoJobs"
_FIREWORKS_STATE = {
    "JOB_STATE_UNSPECIFIED": QUEUED,
    "JOB_STATE_CREATING": QUEUED,
    "JOB_STATE_PENDING": QUEUED,
    "JOB_STATE_VALIDATING": QUEUED,
    "JOB_STATE_RE_QUEUEING": QUEUED,
    "JOB_STATE_IDLE": QUEUED,
    "JOB_STATE_CREATING_INPUT_DATASET": QUEUED,
    "JOB_STATE_RUNNING": RUNNING,
    "JOB_STATE_WRITING_RESULTS": RUNNING,
    "JOB_STATE_CANCELLING": RUNNING,
    "JOB_STATE_PAUSED": RUNNING,
    "JOB_STATE_COMPLETED": SUCCEEDED,
    "JOB_STATE_EARLY_STOPPED": SUCCEEDED,
    "JOB_STATE_FAILED": FAILED,
    "JOB_STATE_EXPIRED": FAILED,
    "JOB_STATE_CANCELLED": CANCELLED,
    "JOB_STATE_DELETING": CANCELLED,
    "JOB_STATE_DELETING_CLEANING_UP": CANCELLED,
}
# Our names of the settings (as start_job takes them) and Fireworks' (camelCase).
_SETTINGS = {
    "n_epochs": "epochs",
    "learning_rate": "learningRate",
    "lora_rank": "loraRank",
    "batch_size": "batchSize",
    "max_context_length": "maxContextLength",
}
_SFT_ONLY = {"early_stop": "earlyStop"}


class FireworksProvider:
    """Fireworks AI's datasets and fine-tuning jobs for one account."""

    name = "fireworks"

    def __init__(self, client: openai.OpenAI, account: str) -> None:
        if not account or "/" in account:
            raise ConfigurationError(
                f"a Fireworks account id is one word (FIREWORKS_ACCOUNT_ID), got {account!r}"
            )
        self.client = client
        self.account = account
        self._last: dict[str, Mapping[str, Any]] = {}  # each job as last read, for its events

    def __repr__(self) -> str:
        return f"FireworksProvider({self.account!r}, base_url={str(self.client.base_url)!r})"

    @property
    def _root(self) -> str:
        return f"/accounts/{self.account}"

    def _get(self, path: str) -> Any:
        with provider_errors(self.name):
            return self.client.get(self._root + path, cast_to=object)

    def _post(self, path: str, **kwargs: Any) -> Any:
        with provider_errors(self.name):
            return self.client.post(self._root + path, cast_to=object, **kwargs)

    def upload(self, path: Path) -> str:
        """Create a dataset named after the file's content and upload the file into it; the
        dataset's resource name (the file id for ``start_job``)."""
        data = path.read_bytes()
        dataset_id = f"finetuner-{hashlib.sha256(data).hexdigest()[:20]}"
        lines = sum(1 for line in data.splitlines() if line.strip())
        dataset = {"userUploaded": {}, "exampleCount": str(lines)}
        body = {"datasetId": dataset_id, "dataset": dataset}
        try:
            self._post("/datasets", body=body)
        except ProviderError as exc:
            if exc.status_code != 409:  # 409: this very content is there already
                raise
            return f"accounts/{self.account}/datasets/{dataset_id}"
        self._post(
            f"/datasets/{dataset_id}:upload",
            files=[("file", (path.name, data, "application/octet-stream"))],
            options={"headers": {"Content-Type": "multipart/form-data"}},
        )
        return f"accounts/{self.account}/datasets/{dataset_id}"

    def _settings(self, request: JobRequest) -> tuple[dict[str, Any], float | None]:
        options = dict(request.hyperparameters)
        beta = options.pop("beta", None)
        if beta is not None and request.method != "dpo":
            raise ConfigurationError("beta applies to DPO jobs (method='dpo')")
        allowed = {**_SETTINGS, **(_SFT_ONLY if request.method == "supervised" else {})}
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ConfigurationError(
                f"Fireworks {request.method} jobs take {', '.join(allowed)}"
                f"{', beta' if request.method == 'dpo' else ''}; not {', '.join(unknown)}"
            )
        return {allowed[k]: v for k, v in options.items()}, beta

    def create_job(self, request: JobRequest) -> JobState:
        if request.metadata or request.seed is not None:
            raise ConfigurationError("Fireworks jobs take no metadata or seed; leave them out")
        settings, beta = self._settings(request)
        config: dict[str, Any] = {"baseModel": request.base_model, **settings}
        body: dict[str, Any] = {"dataset": request.training_file}
        if request.suffix is not None:
            body["displayName"] = request.suffix
        if request.method == "dpo":
            if request.validation_file is not None:
                raise ConfigurationError("Fireworks DPO jobs take no validation file")
            body["trainingConfig"] = config
            if beta is not None:
                body["lossConfig"] = {"klBeta": beta}
            return self._state(self._post(f"/{DPO}", body=body), DPO)
        body.update(config)
        if request.validation_file is not None:
            body["evaluationDataset"] = request.validation_file
        return self._state(self._post(f"/{SFT}", body=body), SFT)

    @staticmethod
    def _collection(job_id: str) -> str:
        collection = job_id.split("/", 1)[0]
        if collection not in (SFT, DPO) or "/" not in job_id:
            raise ConfigurationError(
                f"a Fireworks job id here is {SFT}/<id> or {DPO}/<id>, got {job_id!r}"
            )
        return collection

    def get_job(self, job_id: str) -> JobState:
        collection = self._collection(job_id)
        return self._state(self._get(f"/{job_id}"), collection)

    def list_events(self, job_id: str) -> list[Event]:
        """Fireworks keeps no event log: the job's state and progress as last read (by
        ``get_job``; read now if it was not), as one event."""
        collection = self._collection(job_id)
        job = self._last.get(job_id) or self._get(f"/{job_id}")
        state = self._state(job, collection)
        progress = job.get("jobProgress") if isinstance(job, Mapping) else None
        data: dict[str, Any] = {"state": state.provider_status}
        message = f"{state.provider_status}"
        if isinstance(progress, Mapping) and progress.get("percent") is not None:
            data["percent"] = progress["percent"]
            message += f" ({progress['percent']}%)"
        if state.error:
            message += f": {state.error}"
        ident = hashlib.sha256(message.encode()).hexdigest()[:24]
        level = "error" if state.status == FAILED else "info"
        return [Event(ident, state.finished_at or state.created_at, level, message, data)]

    def cancel_job(self, job_id: str) -> JobState:
        collection = self._collection(job_id)
        self._post(f"/{job_id}:cancel", body={})
        return self._state(self._get(f"/{job_id}"), collection)

    def list_jobs(self, limit: int = 20) -> list[JobState]:
        states = []
        for collection in (SFT, DPO):
            reply = self._get(f"/{collection}?pageSize={limit}")
            states += [self._state(job, collection) for job in field(reply, collection) or []]
        states.sort(key=lambda s: (s.created_at is not None, s.created_at), reverse=True)
        return states[:limit]

    def _state(self, job: Any, collection: str) -> JobState:
        if not isinstance(job, Mapping) or not job.get("name"):
            raise ProviderError(f"{self.name} answered without a fine-tuning job: {job!r}")
        state = str(job.get("state") or "JOB_STATE_UNSPECIFIED")
        status = _FIREWORKS_STATE.get(state, RUNNING)
        config = job.get("trainingConfig") if collection == DPO else job
        config = config if isinstance(config, Mapping) else {}
        message = (job.get("status") or {}).get("message")
        hyper = {ours: config[theirs] for ours, theirs in _SETTINGS.items() if config.get(theirs)}
        job_id = f"{collection}/{str(job['name']).rsplit('/', 1)[-1]}"
        self._last[job_id] = job
        return JobState(
            id=job_id,
            provider=self.name,
            base_model=str(config.get("baseModel") or ""),
            status=status,
            provider_status=state,
            fine_tuned_model=config.get("outputModel") if status == SUCCEEDED else None,
            error=str(message) if message and status == FAILED else None,
            trained_tokens=None,
            created_at=_time(job.get("createTime")),
            finished_at=_time(job.get("completedTime")) if status in FINAL else None,
            training_file=job.get("dataset"),
            validation_file=job.get("evaluationDataset"),
            method="dpo" if collection == DPO else "supervised",
            hyperparameters=hyper,
        )
