"""Fine-tuning APIs for the local server: OpenAI's files + fine_tuning.jobs, and Together's
files + fine-tunes, in their wire formats, with jobs that move through scripted statuses."""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

_ids = itertools.count(1)

OPENAI_STATUSES = ("validating_files", "queued", "running", "running", "running", "succeeded")
TOGETHER_STATUSES = (
    "pending",
    "queued",
    "running",
    "running",
    "compressing",
    "uploading",
    "completed",
)
_OPENAI_FINAL = ("succeeded", "failed", "cancelled")
_TOGETHER_FINAL = ("completed", "error", "user_error", "cancelled")


@dataclass(frozen=True)
class JobScript:
    """How the next created job goes: the statuses it is seen in, one more each time it is
    read, and, ending in failure, the error it reports."""

    statuses: Sequence[str]
    error_code: str | None = None
    error_message: str | None = None
    trained_tokens: int = 12_000


@dataclass
class UploadedFile:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    @property
    def lines(self) -> list[Any]:
        return [json.loads(line) for line in self.content.decode().splitlines() if line.strip()]


@dataclass
class _Job:
    id: str
    request: dict[str, Any]
    script: JobScript
    created_at: int
    step: int = 0
    status: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    finished_at: int | None = None
    cancelled: bool = False


def parse_multipart(
    content_type: str, body: bytes
) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """Form fields and files of a multipart/form-data body."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():  # type: ignore[attr-defined,unused-ignore]
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            payload = b""
        filename = part.get_filename()
        if filename is not None:
            files[str(name)] = (filename, payload)
        else:
            fields[str(name)] = payload.decode()
    return fields, files


class FineTuningAPI:
    """One provider's fine-tuning API on the local server (``flavor``: openai or together).

    ``script(...)`` sets how the next jobs go; ``fail_next(status, ...)`` answers the next
    requests of this API with errors (a 429 with ``retry-after``, a 500, ...).
    """

    def __init__(self, flavor: str) -> None:
        if flavor not in ("openai", "together"):
            raise ValueError(f"flavor is 'openai' or 'together', got {flavor!r}")
        self.flavor = flavor
        self.files: dict[str, UploadedFile] = {}
        self.jobs: dict[str, _Job] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self._scripts: deque[JobScript] = deque()
        self._failures: deque[tuple[int, str, dict[str, str]]] = deque()
        self._lock = threading.Lock()

    def script(self, *scripts: JobScript) -> None:
        """The next created jobs follow these scripts, in order (then the default one)."""
        with self._lock:
            self._scripts.extend(scripts)

    def fail_next(self, *statuses: int, message: str = "temporarily unavailable") -> None:
        """Answer the next requests with these HTTP error statuses (429 gets retry-after: 0)."""
        with self._lock:
            for status in statuses:
                headers = {"retry-after": "0"} if status == 429 else {}
                self._failures.append((status, message, headers))

    # --- routing ------------------------------------------------------------------------------

    def routes(self, path: str) -> bool:
        route = path.split("?", 1)[0]
        if self.flavor == "openai":
            return route.startswith(("/v1/fine_tuning/jobs", "/v1/files")) and not route.startswith(
                "/v1/files/upload"
            )
        return route.startswith(("/v1/fine-tunes", "/v1/files/upload"))

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        route = path.split("?", 1)[0].rstrip("/")
        with self._lock:
            self.requests.append((method, route, body))
            if self._failures:
                status, message, extra = self._failures.popleft()
                return (
                    status,
                    _error(message, "server_error" if status >= 500 else "rate_limit"),
                    extra,
                )
            parts = route.split("/")[2:]  # after /v1
            try:
                if self.flavor == "openai":
                    return (*self._openai(method, parts, headers, body), {})
                return (*self._together(method, parts, headers, body), {})
            except _NotFound as exc:
                return 404, _error(str(exc), "invalid_request_error"), {}
            except _BadRequest as exc:
                return 400, _error(str(exc), "invalid_request_error", exc.param), {}

    # --- OpenAI -------------------------------------------------------------------------------

    def _openai(
        self, method: str, parts: list[str], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        if parts == ["files"] and method == "POST":
            fields, files = parse_multipart(headers.get("content-type", ""), body)
            if "file" not in files or fields.get("purpose") != "fine-tune":
                raise _BadRequest("upload a file with purpose=fine-tune", "file")
            return 200, self._openai_file(self._store_file(files["file"], "fine-tune"))
        if parts[:1] == ["files"] and len(parts) == 2 and method == "GET":
            return 200, self._openai_file(self._file(parts[1]))
        if parts[:2] != ["fine_tuning", "jobs"]:
            raise _NotFound(f"Unknown path /v1/{'/'.join(parts)}")
        rest = parts[2:]
        if not rest and method == "POST":
            request = json.loads(body or b"{}")
            for key in ("training_file", "validation_file"):
                if request.get(key) is not None:
                    self._file(request[key], param=key)
            if not request.get("model"):
                raise _BadRequest("model is required", "model")
            job = self._new_job("ftjob-", request, OPENAI_STATUSES)
            return 200, self._openai_job(job)
        if not rest and method == "GET":
            jobs = sorted(self.jobs.values(), key=lambda j: -j.created_at)
            return 200, {
                "object": "list",
                "data": [self._openai_job(j) for j in jobs],
                "has_more": False,
            }
        job = self._job(rest[0])
        if len(rest) == 1 and method == "GET":
            self._advance(job, _OPENAI_FINAL)
            return 200, self._openai_job(job)
        if rest[1:] == ["events"] and method == "GET":
            events = [
                {"object": "fine_tuning.job.event", **{k: v for k, v in e.items() if k != "status"}}
                for e in reversed(job.events)
            ]
            return 200, {"object": "list", "data": events, "has_more": False}
        if rest[1:] == ["cancel"] and method == "POST":
            if job.status in _OPENAI_FINAL:
                raise _BadRequest(f"Job {job.id} has already {job.status}", None)
            self._set(job, "cancelled", final=True)
            return 200, self._openai_job(job)
        raise _NotFound(f"Unknown path /v1/{'/'.join(parts)}")

    def _openai_file(self, f: UploadedFile) -> dict[str, Any]:
        return {
            "object": "file",
            "id": f.id,
            "purpose": f.purpose,
            "filename": f.filename,
            "bytes": len(f.content),
            "created_at": f.created_at,
            "expires_at": None,
            "status": "processed",
            "status_details": None,
        }

    def _openai_job(self, job: _Job) -> dict[str, Any]:
        request = job.request
        method = request.get("method") or {"type": "supervised", "supervised": {}}
        kind = method.get("type", "supervised")
        given = (method.get(kind) or {}).get("hyperparameters") or {}
        hyper = {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"}
        if kind == "dpo":
            hyper["beta"] = "auto"
        hyper.update(given)
        failed = job.status == "failed"
        succeeded = job.status == "succeeded"
        suffix = request.get("suffix")
        return {
            "object": "fine_tuning.job",
            "id": job.id,
            "model": request["model"],
            "created_at": job.created_at,
            "finished_at": job.finished_at,
            "fine_tuned_model": (
                f"ft:{request['model']}:finetuner-test:{suffix or ''}:{job.id[-8:]}"
                if succeeded
                else None
            ),
            "organization_id": "org-finetuner-test",
            "result_files": ["file-results" + job.id[-8:]] if succeeded else [],
            "status": job.status,
            "validation_file": request.get("validation_file"),
            "training_file": request["training_file"],
            "hyperparameters": {k: v for k, v in hyper.items() if k != "beta"},
            "method": {"type": kind, kind: {"hyperparameters": hyper}},
            "trained_tokens": job.script.trained_tokens if succeeded else None,
            "error": (
                {
                    "code": job.script.error_code or "invalid_training_file",
                    "message": job.script.error_message or "The job failed.",
                    "param": "training_file",
                }
                if failed
                else None
            ),
            "seed": request.get("seed", 1234),
            "estimated_finish": None,
            "integrations": [],
            "metadata": request.get("metadata"),
            "user_provided_suffix": suffix,
        }

    # --- Together -----------------------------------------------------------------------------

    def _together(
        self, method: str, parts: list[str], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        if parts == ["files", "upload"] and method == "POST":
            fields, files = parse_multipart(headers.get("content-type", ""), body)
            for name in ("purpose", "file_name"):
                if name not in fields:
                    raise _BadRequest(f"{name} is required", name)
            if "file" not in files:
                raise _BadRequest("file is required", "file")
            name, content = files["file"]
            f = self._store_file((fields["file_name"], content), fields["purpose"])
            return 200, {
                "id": f.id,
                "object": "file",
                "created_at": f.created_at,
                "filename": f.filename,
                "bytes": len(content),
                "purpose": f.purpose,
                "Processed": True,
                "FileType": fields.get("file_type", "jsonl"),
                "LineCount": len(f.lines),
            }
        if parts[:1] != ["fine-tunes"]:
            raise _NotFound(f"Unknown path /v1/{'/'.join(parts)}")
        rest = parts[1:]
        if not rest and method == "POST":
            request = json.loads(body or b"{}")
            for key in ("training_file", "model", "n_epochs", "learning_rate"):
                if request.get(key) is None:
                    raise _BadRequest(f"{key} is required", key)
            for key in ("training_file", "validation_file"):
                if request.get(key) is not None:
                    self._file(request[key], param=key)
            job = self._new_job("ft-", request, TOGETHER_STATUSES)
            return 200, self._together_job(job)
        if not rest and method == "GET":
            jobs = sorted(self.jobs.values(), key=lambda j: -j.created_at)
            return 200, {"data": [self._together_job(j) for j in jobs]}
        job = self._job(rest[0])
        if len(rest) == 1 and method == "GET":
            if job.status == "cancel_requested":
                self._set(job, "cancelled", final=True)
            else:
                self._advance(job, _TOGETHER_FINAL)
            return 200, self._together_job(job)
        if rest[1:] == ["events"] and method == "GET":
            return 200, {"data": [self._together_event(e) for e in job.events]}
        if rest[1:] == ["cancel"] and method == "POST":
            if job.status not in _TOGETHER_FINAL:
                self._set(job, "cancel_requested")
            return 200, self._together_job(job)
        raise _NotFound(f"Unknown path /v1/{'/'.join(parts)}")

    def _together_job(self, job: _Job) -> dict[str, Any]:
        request = job.request
        done = job.status == "completed"
        suffix = request.get("suffix") or "ft"
        return {
            "id": job.id,
            "status": job.status,
            "created_at": _iso(job.created_at),
            "updated_at": _iso(job.finished_at or job.created_at + job.step),
            "model": request["model"],
            "model_output_name": (
                f"finetuner-test/{request['model'].split('/')[-1]}-{suffix}-{job.id[-6:]}"
            ),
            "training_file": request["training_file"],
            "validation_file": request.get("validation_file"),
            "n_epochs": request["n_epochs"],
            "n_checkpoints": request.get("n_checkpoints", 1),
            "n_evals": request.get("n_evals", 0),
            "batch_size": 16 if request.get("batch_size") == "max" else request.get("batch_size"),
            "learning_rate": request["learning_rate"],
            "training_type": request.get("training_type") or {"type": "Full"},
            "training_method": request.get("training_method") or {"method": "sft"},
            "token_count": job.script.trained_tokens if done else None,
            "param_count": 8_030_261_248,
            "total_price": 0,
            "epochs_completed": request["n_epochs"] if done else 0,
            "events": [self._together_event(e) for e in job.events],
            "suffix": request.get("suffix"),
        }

    @staticmethod
    def _together_event(event: dict[str, Any]) -> dict[str, Any]:
        level = {"info": "Info", "error": "Error", "warning": "Warning"}[event["level"]]
        kinds = {"error": "JOB_ERROR", "completed": "JOB_COMPLETE", "running": "TRAINING_START"}
        out = {
            "object": "fine-tune-event",
            "created_at": _iso(event["created_at"]),
            "level": level,
            "message": event["message"],
            "type": kinds.get(event.get("status", ""), "JOB_PENDING"),
            "param_count": 0,
            "token_count": 0,
            "wandb_url": "",
            "hash": "",
        }
        if "step" in event.get("data", {}):
            out["step"] = event["data"]["step"]
            out["total_steps"] = event["data"]["total_steps"]
        return out

    # --- shared -------------------------------------------------------------------------------

    def _store_file(self, file: tuple[str, bytes], purpose: str) -> UploadedFile:
        name, content = file
        uploaded = UploadedFile(f"file-{next(_ids):024x}", name, purpose, content, int(time.time()))
        self.files[uploaded.id] = uploaded
        return uploaded

    def _file(self, file_id: str, param: str | None = None) -> UploadedFile:
        if file_id not in self.files:
            if param is not None:
                raise _BadRequest(f"invalid {param}: {file_id}", param)
            raise _NotFound(f"No such File object: {file_id}")
        return self.files[file_id]

    def _job(self, job_id: str) -> _Job:
        if job_id not in self.jobs:
            raise _NotFound(f"No fine-tuning job with id {job_id}")
        return self.jobs[job_id]

    def _new_job(self, prefix: str, request: dict[str, Any], default: Sequence[str]) -> _Job:
        script = self._scripts.popleft() if self._scripts else JobScript(default)
        job = _Job(f"{prefix}{next(_ids):024x}", request, script, int(time.time()))
        self.jobs[job.id] = job
        self._set(job, script.statuses[0])
        return job

    def _advance(self, job: _Job, final: Sequence[str]) -> None:
        if job.status in final:
            return
        job.step = min(job.step + 1, len(job.script.statuses) - 1)
        status = job.script.statuses[job.step]
        self._set(job, status, final=status in final)

    def _set(self, job: _Job, status: str, *, final: bool = False) -> None:
        now = int(time.time())
        if status == "running":
            total = sum(1 for s in job.script.statuses if s == "running")
            step = sum(1 for e in job.events if "step" in e.get("data", {})) + 1
            job.events.append(
                _event(
                    status,
                    f"Step {step}/{total}: training loss={1.0 / step:.3f}",
                    {"step": step, "total_steps": total, "train_loss": 1.0 / step},
                )
            )
        elif status != job.status:
            if status in ("failed", "error", "user_error"):
                message = job.script.error_message or "The job failed."
                job.events.append(_event(status, message, {}, level="error"))
            else:
                job.events.append(_event(status, _MESSAGES.get(status, f"Job {status}."), {}))
        job.status = status
        if final:
            job.finished_at = now


_MESSAGES = {
    "validating_files": "Validating training file",
    "pending": "Fine tune request created",
    "queued": "Job queued",
    "compressing": "Compressing output model",
    "uploading": "Uploading output model",
    "succeeded": "The job has successfully completed",
    "completed": "Job finished",
    "cancelled": "Job cancelled",
    "cancel_requested": "Cancel requested",
}


def _event(status: str, message: str, data: dict[str, Any], level: str = "info") -> dict[str, Any]:
    return {
        "id": f"ftevent-{next(_ids):024x}",
        "created_at": int(time.time()),
        "level": level,
        "message": message,
        "data": data,
        "type": "metrics" if "step" in data else "message",
        "status": status,
    }


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _error(message: str, type_: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": None}}


class _NotFound(Exception):
    pass


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None) -> None:
        super().__init__(message)
        self.param = param
