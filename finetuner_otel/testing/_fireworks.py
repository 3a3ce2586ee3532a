"""Fireworks AI's datasets and fine-tuning jobs for the local server, in its wire format
(docs.fireworks.ai/api-reference: Create Dataset, Upload Dataset Files, Create/Get/List
Supervised Fine-tuning Job, Create/Get DPO Job; resources named ``accounts/{account}/...``,
camelCase fields, ``JOB_STATE_*`` states, errors as ``{"code", "message", "details"}``).
Each job moves one state further every time it is read, as the other fine-tuning APIs do."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ._finetuning import JobScript, parse_multipart

FIREWORKS_STATES = (
    "JOB_STATE_CREATING",
    "JOB_STATE_PENDING",
    "JOB_STATE_RUNNING",
    "JOB_STATE_RUNNING",
    "JOB_STATE_WRITING_RESULTS",
    "JOB_STATE_COMPLETED",
)
_FINAL = ("JOB_STATE_COMPLETED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")
_COLLECTIONS = ("supervisedFineTuningJobs", "dpoJobs")
_GRPC = {400: 3, 404: 5, 409: 6, 429: 8, 500: 13, 503: 14}  # HTTP status -> gRPC code
_ids = itertools.count(1)


@dataclass
class FireworksDataset:
    name: str
    request: dict[str, Any]
    content: bytes = b""
    filename: str | None = None
    state: str = "UPLOADING"

    @property
    def lines(self) -> list[Any]:
        return [json.loads(line) for line in self.content.decode().splitlines() if line.strip()]


@dataclass
class _Job:
    name: str
    collection: str
    request: dict[str, Any]
    script: JobScript
    created: float
    step: int = 0
    completed: float | None = None
    state: str = field(default="")


class _Error(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FireworksAPI:
    """Fireworks' fine-tuning API on the local server (``server.fireworks``): ``datasets``
    and ``jobs`` hold what was sent; ``script(...)`` and ``fail_next(...)`` as for the others."""

    def __init__(self) -> None:
        self.datasets: dict[str, FireworksDataset] = {}
        self.jobs: dict[str, _Job] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self._scripts: deque[JobScript] = deque()
        self._failures: deque[tuple[int, str]] = deque()
        self._lock = threading.Lock()

    def script(self, *scripts: JobScript) -> None:
        with self._lock:
            self._scripts.extend(scripts)

    def fail_next(self, *statuses: int, message: str = "temporarily unavailable") -> None:
        with self._lock:
            self._failures.extend((status, message) for status in statuses)

    def routes(self, path: str) -> bool:
        return path.split("?", 1)[0].startswith("/v1/accounts/")

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        route = path.split("?", 1)[0].rstrip("/")
        with self._lock:
            self.requests.append((method, route, body))
            if self._failures:
                status, message = self._failures.popleft()
                extra = {"retry-after": "0"} if status == 429 else {}
                return status, _error(status, message), extra
            try:
                return 200, self._route(method, route, headers, body), {}
            except _Error as exc:
                return exc.status, _error(exc.status, str(exc)), {}

    def _route(self, method: str, route: str, headers: dict[str, str], body: bytes) -> Any:
        parts = route.split("/")[2:]  # accounts, {account}, collection, [id[:verb]]
        if len(parts) < 3 or parts[0] != "accounts":
            raise _Error(404, f"Not Found: {route}")
        account, collection, rest = parts[1], parts[2], parts[3:]
        if collection == "datasets":
            return self._datasets(method, account, rest, headers, body)
        if collection not in _COLLECTIONS:
            raise _Error(404, f"Not Found: {route}")
        if not rest and method == "POST":
            return self._create(account, collection, json.loads(body or b"{}"))
        if not rest and method == "GET":
            jobs = [j for j in self.jobs.values() if j.collection == collection]
            return {
                collection: [self._job(j) for j in jobs],
                "nextPageToken": "",
                "totalSize": len(jobs),
            }
        job_id, _, verb = rest[0].partition(":")
        job = self.jobs.get(f"accounts/{account}/{collection}/{job_id}")
        if job is None:
            raise _Error(404, f"job accounts/{account}/{collection}/{job_id} not found")
        if verb == "cancel" and method == "POST":
            if job.state in _FINAL:
                raise _Error(400, f"job {job.name} is already {job.state}")
            self._set(job, "JOB_STATE_CANCELLED")
            return {}
        if not verb and method == "GET":
            self._advance(job)
            return self._job(job)
        raise _Error(404, f"Not Found: {route}")

    def _datasets(
        self, method: str, account: str, rest: list[str], headers: dict[str, str], body: bytes
    ) -> Any:
        if not rest and method == "POST":
            request = json.loads(body or b"{}")
            dataset_id = request.get("datasetId")
            if not dataset_id or "dataset" not in request:
                raise _Error(400, "datasetId and dataset are required")
            name = f"accounts/{account}/datasets/{dataset_id}"
            if name in self.datasets:
                raise _Error(409, f"dataset {name} already exists")
            self.datasets[name] = FireworksDataset(name, request)
            return self._dataset(self.datasets[name])
        dataset_id, _, verb = rest[0].partition(":") if rest else ("", "", "")
        dataset = self.datasets.get(f"accounts/{account}/datasets/{dataset_id}")
        if dataset is None:
            raise _Error(404, f"dataset accounts/{account}/datasets/{dataset_id} not found")
        if verb == "upload" and method == "POST":
            _, files = parse_multipart(headers.get("content-type", ""), body)
            if "file" not in files:
                raise _Error(400, "file is required")
            dataset.filename, dataset.content = files["file"]
            dataset.state = "READY"
            return {
                "id": dataset_id,
                "object": "file",
                "bytes": len(dataset.content),
                "created_at": int(time.time()),
                "filename": dataset.filename,
                "purpose": "fine-tune",
            }
        if not verb and method == "GET":
            return self._dataset(dataset)
        raise _Error(404, f"Not Found: datasets/{rest[0]}")

    def _dataset(self, dataset: FireworksDataset) -> dict[str, Any]:
        given = dataset.request.get("dataset") or {}
        return {
            "name": dataset.name,
            "displayName": given.get("displayName", ""),
            "createTime": _iso(time.time()),
            "state": dataset.state,
            "status": {"code": "OK", "message": ""},
            "exampleCount": str(len(dataset.lines))
            if dataset.content
            else given.get("exampleCount"),
            "userUploaded": {},
            "format": given.get("format", "CHAT"),
        }

    def _create(self, account: str, collection: str, request: dict[str, Any]) -> Any:
        dataset = request.get("dataset")
        if dataset not in self.datasets or self.datasets[dataset].state != "READY":
            raise _Error(400, f"dataset {dataset!r} does not exist or is not READY")
        config = request.get("trainingConfig") if collection == "dpoJobs" else request
        if not (config or {}).get("baseModel"):
            raise _Error(400, "baseModel is required")
        evaluation = request.get("evaluationDataset")
        if evaluation is not None and evaluation not in self.datasets:
            raise _Error(400, f"evaluationDataset {evaluation!r} does not exist")
        script = self._scripts.popleft() if self._scripts else JobScript(FIREWORKS_STATES)
        name = f"accounts/{account}/{collection}/{next(_ids):020x}"
        job = _Job(name, collection, request, script, time.time())
        self.jobs[name] = job
        self._set(job, script.statuses[0])
        return self._job(job)

    def _advance(self, job: _Job) -> None:
        if job.state in _FINAL:
            return
        job.step = min(job.step + 1, len(job.script.statuses) - 1)
        self._set(job, job.script.statuses[job.step])

    def _set(self, job: _Job, state: str) -> None:
        job.state = state
        if state in _FINAL and job.completed is None:
            job.completed = time.time()

    def _job(self, job: _Job) -> dict[str, Any]:
        request = dict(job.request)
        config = (
            dict(request.get("trainingConfig") or {}) if job.collection == "dpoJobs" else request
        )
        done = job.state == "JOB_STATE_COMPLETED"
        output = f"accounts/{job.name.split('/')[1]}/models/ft-{job.name.rsplit('/', 1)[-1][-8:]}"
        config["outputModel"] = config.get("outputModel") or output
        failed = job.state == "JOB_STATE_FAILED"
        out: dict[str, Any] = {
            **request,
            "name": job.name,
            "createTime": _iso(job.created),
            "completedTime": _iso(job.completed) if job.completed else None,
            "updateTime": _iso(time.time()),
            "state": job.state,
            "status": {
                "code": "INTERNAL" if failed else "OK",
                "message": (job.script.error_message or "The job failed.") if failed else "",
            },
            "createdBy": "finetuner-test@example.com",
        }
        total = max(1, len(job.script.statuses) - 1)
        out["jobProgress"] = {"percent": 100 if done else int(100 * job.step / total)}
        if job.collection == "dpoJobs":
            out["trainingConfig"] = config
        else:
            out.update(config)
        return out


def _error(status: int, message: str) -> dict[str, Any]:
    return {"code": _GRPC.get(status, 2), "message": message, "details": []}
