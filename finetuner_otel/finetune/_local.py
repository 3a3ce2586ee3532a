"""The local provider: supervised fine-tuning with Hugging Face TRL and a PEFT LoRA adapter.

A job is a directory under ``output_dir/jobs/``: ``job.json`` (its state, replaced atomically),
``events.jsonl`` (one event a line), ``train.log``, and, once it succeeds, ``adapter/`` (the
LoRA adapter and tokenizer; that path is the job's ``fine_tuned_model``). Training runs in a
process of its own (``python -m finetuner_otel.finetune._local_train``), detached in a session
of its own, so it goes on when the process that started it exits, and ``get_job(job_id)`` from
any process follows it again. Needs ``pip install 'finetuner-otel[local]'`` (torch,
transformers, trl, peft, datasets); runs on a GPU when torch sees one, on the CPU otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._errors import ConfigurationError
from ._types import (
    CANCELLED,
    FAILED,
    FINAL,
    Event,
    JobRequest,
    JobState,
    ProviderError,
    timestamp,
)

# What a local job takes, with the defaults it uses (start_job(..., **hyperparameters)).
LOCAL_DEFAULTS: dict[str, Any] = {
    "n_epochs": 3,
    "batch_size": 4,
    "learning_rate": 2e-4,
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "max_length": 1024,
    "max_steps": -1,  # > 0: stop after this many steps (a quick trial)
    "logging_steps": 1,
}
_REQUIRED = ("torch", "transformers", "trl", "peft", "datasets")


def write_json(path: Path, value: Any) -> None:
    """Replace ``path`` with ``value`` as JSON, atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: a zombie (ended, not yet reaped by an init that does not reap) is gone too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class LocalProvider:
    """Fine-tunes on this machine; see the module's docstring."""

    name = "local"

    def __init__(self, output_dir: Path, *, python: str | None = None, **defaults: Any) -> None:
        unknown = sorted(set(defaults) - set(LOCAL_DEFAULTS))
        if unknown:
            raise ConfigurationError(
                f"the local trainer takes {', '.join(LOCAL_DEFAULTS)}; not {', '.join(unknown)}"
            )
        self.output_dir = Path(output_dir)
        self.python = python or sys.executable
        self.defaults = {**LOCAL_DEFAULTS, **defaults}

    def __repr__(self) -> str:
        return f"LocalProvider({str(self.output_dir)!r})"

    @property
    def jobs_dir(self) -> Path:
        return self.output_dir / "jobs"

    def upload(self, path: Path) -> str:
        """Keep a copy of the file beside the jobs; its id names the content."""
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:24]
        file_id = f"file-local-{digest}"
        target = self.output_dir / "files" / f"{file_id}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            shutil.copyfile(path, target)
        return file_id

    def _file(self, file_id: str, label: str) -> Path:
        path = self.output_dir / "files" / f"{file_id}.jsonl"
        if not path.is_file():
            raise ConfigurationError(
                f"{label} {file_id!r} was not uploaded to {self.output_dir}; use the id "
                f"upload_dataset() returned"
            )
        return path

    def create_job(self, request: JobRequest) -> JobState:
        if request.method != "supervised":
            raise ConfigurationError("the local trainer fine-tunes supervised only, not DPO")
        unknown = sorted(set(request.hyperparameters) - set(LOCAL_DEFAULTS))
        if unknown:
            raise ConfigurationError(
                f"the local trainer takes {', '.join(LOCAL_DEFAULTS)}; not {', '.join(unknown)}"
            )
        missing = [m for m in _REQUIRED if not _importable(m)]
        if missing:
            raise ConfigurationError(
                f"the local trainer needs {', '.join(missing)}: pip install 'finetuner-otel[local]'"
            )
        train = self._file(request.training_file, "training_file")
        validation_file = request.validation_file
        val = self._file(validation_file, "validation_file") if validation_file else None
        job_id = f"ftjob-local-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        job_dir = self.jobs_dir / job_id
        job_dir.mkdir(parents=True)
        state = {
            "id": job_id,
            "status": "queued",
            "base_model": request.base_model,
            "training_file": request.training_file,
            "validation_file": validation_file,
            "train_path": str(train),
            "validation_path": str(val) if val else None,
            "hyperparameters": {**self.defaults, **request.hyperparameters},
            "suffix": request.suffix,
            "seed": request.seed if request.seed is not None else 42,
            "metadata": dict(request.metadata or {}),
            "created_at": time.time(),
            "finished_at": None,
            "fine_tuned_model": None,
            "error": None,
            "trained_tokens": None,
        }
        write_json(job_dir / "job.json", state)
        self._launch(job_dir)
        return self.get_job(job_id)

    def _launch(self, job_dir: Path) -> None:
        """Start the trainer detached (its own session, not our child, so it outlives this
        process); the launcher writes its pid beside job.json and returns at once."""
        launched = subprocess.run(
            [self.python, "-m", "finetuner_otel.finetune._local_train", "--detach", str(job_dir)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if launched.returncode != 0:
            raise ProviderError(
                f"the local trainer could not be started: {launched.stderr.strip()[-500:]}"
            )

    def _dir(self, job_id: str) -> Path:
        job_dir = self.jobs_dir / job_id
        if not (job_dir / "job.json").is_file():
            raise ProviderError(f"no local job {job_id!r} under {self.jobs_dir}")
        return job_dir

    def get_job(self, job_id: str) -> JobState:
        job_dir = self._dir(job_id)
        state = read_json(job_dir / "job.json")
        pid = _pid(job_dir)  # None for a moment while the trainer starts
        if state["status"] not in FINAL and pid is not None and not _alive(pid):
            time.sleep(0.2)  # it may have written its last state just now
            state = read_json(job_dir / "job.json")
            if state["status"] not in FINAL:
                tail = _tail(job_dir / "train.log")
                state.update(
                    status=FAILED,
                    error=f"the training process ended unexpectedly: {tail}",
                    finished_at=time.time(),
                )
                write_json(job_dir / "job.json", state)
        return self._state(state)

    def _state(self, state: Mapping[str, Any]) -> JobState:
        hyper = state.get("hyperparameters") or {}
        return JobState(
            id=state["id"],
            provider=self.name,
            base_model=state["base_model"],
            status=state["status"],
            provider_status=state.get("phase") or state["status"],
            fine_tuned_model=state.get("fine_tuned_model"),
            error=state.get("error"),
            trained_tokens=state.get("trained_tokens"),
            created_at=timestamp(state.get("created_at")),
            finished_at=timestamp(state.get("finished_at")),
            training_file=state.get("training_file"),
            validation_file=state.get("validation_file"),
            method="supervised",
            hyperparameters=dict(hyper),
        )

    def list_events(self, job_id: str) -> list[Event]:
        path = self._dir(job_id) / "events.jsonl"
        if not path.exists():
            return []
        events = []
        for number, line in enumerate(path.read_text().splitlines()):
            if not line.strip():
                continue
            raw = json.loads(line)
            events.append(
                Event(
                    id=f"{job_id}-{number}",
                    created_at=timestamp(raw.get("created_at")),
                    level=raw.get("level", "info"),
                    message=raw.get("message", ""),
                    data=raw.get("data") or {},
                )
            )
        return events

    def cancel_job(self, job_id: str) -> JobState:
        job_dir = self._dir(job_id)
        state = read_json(job_dir / "job.json")
        if state["status"] in FINAL:
            return self._state(state)
        pid = _pid(job_dir)
        if pid and _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
        state.update(status=CANCELLED, finished_at=time.time(), phase=CANCELLED)
        write_json(job_dir / "job.json", state)
        return self._state(state)

    def list_jobs(self, limit: int = 20) -> list[JobState]:
        if not self.jobs_dir.exists():
            return []
        dirs = sorted(
            (d for d in self.jobs_dir.iterdir() if (d / "job.json").is_file()), reverse=True
        )
        return [self.get_job(d.name) for d in dirs[:limit]]


def _pid(job_dir: Path) -> int | None:
    try:
        return int((job_dir / "pid").read_text())
    except (OSError, ValueError):
        return None


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no train.log)"
    return " | ".join(text[-lines:]) or "(train.log is empty)"


__all__ = ["LOCAL_DEFAULTS", "LocalProvider"]
