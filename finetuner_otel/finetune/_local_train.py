"""One local fine-tuning job, run as ``python -m finetuner_otel.finetune._local_train JOB_DIR``.

Reads ``JOB_DIR/job.json`` (written by ``LocalProvider.create_job``), trains a LoRA adapter on
the chat-format training file with TRL's ``SFTTrainer``, and reports as it goes: ``job.json``
(status, step, the adapter's path when done) and ``events.jsonl`` (loss per step, eval loss,
throughput).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from ._local import read_json, write_json


class _Reporter:
    def __init__(self, job_dir: Path) -> None:
        self.job_dir = job_dir
        self.events = job_dir / "events.jsonl"

    def state(self, **changes: Any) -> None:
        state = read_json(self.job_dir / "job.json")
        if state.get("status") == "cancelled":  # cancel_job() said so: stop here
            sys.exit(0)
        state.update(changes)
        write_json(self.job_dir / "job.json", state)

    def event(self, message: str, level: str = "info", **data: Any) -> None:
        line = {"created_at": time.time(), "level": level, "message": message, "data": data}
        with open(self.events, "a") as fh:
            fh.write(json.dumps(line) + "\n")


def train(job_dir: Path) -> None:
    report = _Reporter(job_dir)
    job = read_json(job_dir / "job.json")
    report.state(status="running", phase="loading")
    report.event(f"Loading {job['base_model']}")

    from trl import SFTTrainer

    device, tokenizer, model = _load(job["base_model"])
    train_data = chat_dataset(job["train_path"], tokenizer)
    validation = job.get("validation_path")
    eval_data = chat_dataset(validation, tokenizer) if validation else None
    trainer = SFTTrainer(
        model=model,
        args=_config(job_dir, job, device, validating=eval_data is not None),
        train_dataset=train_data,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        peft_config=_lora(job["hyperparameters"]),
        callbacks=[_progress(report)],
    )
    report.event(f"Training on {len(train_data)} examples on {device}")
    result = trainer.train()
    adapter = job_dir / "adapter"
    trainer.save_model(str(adapter))
    tokenizer.save_pretrained(str(adapter))
    tokens = int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0)
    runtime = float(result.metrics.get("train_runtime") or 0.0)
    throughput = tokens / runtime if runtime else None
    report.event(
        f"Trained {tokens} tokens in {runtime:.1f}s"
        + (f" ({throughput:.0f} tokens/s on {device})" if throughput else ""),
        tokens=tokens,
        seconds=runtime,
        tokens_per_second=throughput,
        device=device,
    )
    report.state(
        status="succeeded",
        phase="succeeded",
        fine_tuned_model=str(adapter.resolve()),
        trained_tokens=tokens,
        finished_at=time.time(),
        tokens_per_second=throughput,
        device=device,
    )
    report.event("The job has successfully completed")


def _load(base_model: str) -> tuple[str, Any, Any]:
    """The device to train on, and the base model's tokenizer (with a chat template) and model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"the tokenizer of {base_model} has no chat template; use an instruct/chat "
            f"model, or set tokenizer.chat_template and save it with the model"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        base_model, torch_dtype=torch.bfloat16 if device == "cuda" else torch.float32
    )
    return device, tokenizer, model


def chat_dataset(path: str, tokenizer: Any) -> Any:
    """A chat fine-tuning JSONL file as the dataset TRL trains on: each example converted for
    HF chat templates (``finetuner_otel._hf``: text parts as strings, arguments as objects,
    ``tools`` kept), every one rendered through ``tokenizer``'s template first, so an example
    it refuses is named before training starts. Images are refused: this trainer fine-tunes
    text models (a vision model needs its processor's image inputs, not only the template).
    Where every example trains on its last answer only, the rows are prompt-completion ones,
    and TRL takes the loss on the answer alone."""
    from .._hf import (
        HFConversionError,
        check_template,
        has_images,
        hf_dataset,
        hf_records,
        prompt_completion,
        trains_last_answer_only,
    )

    lines = Path(path).read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    ids = [f"{Path(path).name} line {n + 1}" for n in range(len(records))]
    rows = hf_records(records, ids)
    with_images = [
        (i, "it has images") for i, r in zip(ids, rows, strict=True) if has_images(r["messages"])
    ]
    if with_images:
        raise HFConversionError(
            f"the local trainer fine-tunes text models; {len(with_images)} example(s) have "
            f"images ({', '.join(i for i, _ in with_images[:5])}): leave them out",
            with_images,
        )
    check_template(tokenizer, rows, ids)
    if trains_last_answer_only(rows):  # the loss on the last answer only, as OpenAI's
        return hf_dataset(prompt_completion(rows))
    return hf_dataset(rows)


def _config(job_dir: Path, job: dict[str, Any], device: str, *, validating: bool) -> Any:
    from trl import SFTConfig

    hp = job["hyperparameters"]
    return SFTConfig(
        output_dir=str(job_dir / "checkpoints"),
        num_train_epochs=hp["n_epochs"],
        max_steps=hp["max_steps"],
        per_device_train_batch_size=hp["batch_size"],
        per_device_eval_batch_size=hp["batch_size"],
        learning_rate=hp["learning_rate"],
        logging_steps=hp["logging_steps"],
        eval_strategy="epoch" if validating else "no",
        save_strategy="no",
        report_to=[],
        seed=job["seed"],
        max_length=hp["max_length"],
        bf16=device == "cuda",
        use_cpu=device == "cpu",
        include_num_input_tokens_seen=True,
        disable_tqdm=True,
    )


def _lora(hp: dict[str, Any]) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=hp["lora_r"],
        lora_alpha=hp["lora_alpha"],
        lora_dropout=hp["lora_dropout"],
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def _progress(report: _Reporter) -> Any:
    """A trainer callback that reports each logged step (losses) as an event and in job.json."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            logs = dict(logs or {})
            data = {"step": state.global_step, "total_steps": state.max_steps}
            parts = [f"Step {state.global_step}/{state.max_steps}"]
            for key, label in (("loss", "train_loss"), ("eval_loss", "valid_loss")):
                if key in logs:
                    data[label] = float(logs[key])
                    parts.append(f"{label.replace('_', ' ')}={float(logs[key]):.4f}")
            if len(parts) > 1:
                report.event(": ".join([parts[0], ", ".join(parts[1:])]), **data)
            report.state(phase="running", step=state.global_step, total_steps=state.max_steps)

    return Progress()


def detach(job_dir: Path) -> None:
    """Start the training in a child of its own session, write its pid, and return: the
    trainer is then nobody's child here and outlives whoever started it."""
    pid = os.fork()
    if pid:
        (job_dir / "pid").write_text(str(pid))
        return
    try:
        os.setsid()
        log = os.open(job_dir / "train.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        run(job_dir)
    finally:
        os._exit(0)


def run(job_dir: Path) -> None:
    report = _Reporter(job_dir)
    try:
        train(job_dir)
    except SystemExit:  # cancel_job() stopped it
        raise
    except BaseException as exc:  # recorded for get_job(); the traceback goes to train.log
        traceback.print_exc()
        message = f"{type(exc).__name__}: {exc}"
        report.event(message, level="error")
        report.state(status="failed", phase="failed", error=message, finished_at=time.time())


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if sys.argv[1] == "--detach":
        detach(Path(sys.argv[2]))
    else:
        run(Path(sys.argv[1]))


if __name__ == "__main__":
    main()
