"""``finetuner finetune``: start, follow and list fine-tuning jobs."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError
from ._command import Arg, Context, Group

if TYPE_CHECKING:
    from ..finetune import Finetuner, Job

GROUP = Group("finetune", "start, follow and list fine-tuning jobs")
PROVIDERS = ("openai", "together", "fireworks", "local")
_OUTPUT_DIR = Arg("--output-dir", help="local provider: where models go")
_POLL = Arg("--poll", type=float, default=10.0, help=argparse.SUPPRESS)


def _finetuner(ctx: Context, provider: str, output_dir: str | None = None) -> Finetuner:
    from ..finetune import Finetuner

    if provider == "openai":
        return Finetuner.for_openai(store=ctx.store)
    if provider == "together":
        return Finetuner.for_together(store=ctx.store)
    if provider == "fireworks":  # issue 20
        return Finetuner.for_fireworks(store=ctx.store)
    if provider == "local":
        return Finetuner.for_local(output_dir or "finetuner-models", store=ctx.store)
    raise ConfigurationError(f"provider is one of {', '.join(PROVIDERS)}, got {provider!r}")


def _job_provider(ctx: Context, job_id: str) -> str:
    from ..store import reads

    provider = reads.job_provider(ctx.existing_store(), job_id)
    if provider is None:
        raise ConfigurationError(
            f"no job {job_id!r} in {ctx.store.location}; pass --provider to ask the provider "
            f"directly"
        )
    return provider if provider in PROVIDERS else "openai"


def _job_record(job: Job) -> dict[str, Any]:
    s = job.state
    return {
        "id": s.id,
        "provider": s.provider,
        "base_model": s.base_model,
        "status": s.status,
        "provider_status": s.provider_status,
        "fine_tuned_model": s.fine_tuned_model,
        "error": s.error,
        "trained_tokens": s.trained_tokens,
        "created_at": s.created_at,
        "finished_at": s.finished_at,
        "method": s.method,
        "hyperparameters": dict(s.hyperparameters),
    }


@GROUP.command(
    "start",
    Arg("dataset"),
    Arg("--provider", choices=list(PROVIDERS), default="openai"),
    Arg("--model", required=True, help="the base model"),
    Arg("--val-split", type=float, default=0.0, help="held out for validation"),
    Arg("--seed", type=int, default=0),
    Arg("--epochs", type=int),
    Arg("--suffix"),
    _OUTPUT_DIR,
    Arg("--wait", action="store_true", help="follow the job to its end"),
    _POLL,
)
def finetune_start(args: argparse.Namespace, ctx: Context) -> int:
    """fine-tune a model on a dataset"""
    dataset = ctx.dataset(args.dataset)
    if args.val_split:
        train, val = dataset.split(1 - args.val_split, seed=args.seed)
    else:
        train, val = dataset, None
    ft = _finetuner(ctx, args.provider, args.output_dir)
    train_id = ft.upload_dataset(train)
    val_id = ft.upload_dataset(val) if val is not None and len(val) else None
    hyper = {"n_epochs": args.epochs} if args.epochs else {}
    job = ft.start_job(args.model, train_id, val_id, suffix=args.suffix, **hyper)
    if args.wait:
        job.wait(poll=args.poll, progress=ctx.progress())
    ctx.output.record(_job_record(job))
    return 0 if job.state.status != "failed" else 1


_JOB = (
    Arg("job"),
    Arg("--provider", choices=list(PROVIDERS), help="default: the job's, from the store"),
    _OUTPUT_DIR,
    _POLL,
)


@GROUP.command("cancel", *_JOB, help="cancel a job")
@GROUP.command("wait", *_JOB, help="follow a job to its end (exit 1 unless it succeeds)")
@GROUP.command("status", *_JOB, help="a job, fresh from its provider")
def finetune_status(args: argparse.Namespace, ctx: Context) -> int:
    """a job: its status, followed to its end, or cancelled"""
    provider = args.provider or _job_provider(ctx, args.job)
    job = _finetuner(ctx, provider, args.output_dir).get_job(args.job)
    if args.action == "wait":
        job.wait(poll=args.poll, progress=ctx.progress(), raise_on_failure=False)
    elif args.action == "cancel":
        job.cancel()
    ctx.output.record(_job_record(job))
    return 1 if args.action == "wait" and job.state.status != "succeeded" else 0


@GROUP.command("list")
def finetune_list(args: argparse.Namespace, ctx: Context) -> int:
    """the jobs in the store, with what they trained on"""
    from ..store import reads

    jobs = reads.finetune_lineage(ctx.existing_store())
    columns = list(reads.LINEAGE_COLUMNS)
    ctx.output.rows(columns, [[job[c] for c in columns] for job in jobs])
    return 0


# --- serve a local job's adapter ---
@GROUP.command(
    "serve",
    Arg("job", help="a local job's id, or its folder"),
    _OUTPUT_DIR,
    Arg("--host", default="127.0.0.1"),
    Arg("--port", type=int, default=8001),
    Arg("--backend", choices=["auto", "transformers", "vllm"], default="auto"),
    Arg("--max-new-tokens", type=int, default=256),
)
def finetune_serve(args: argparse.Namespace, ctx: Context) -> int:
    """serve a local job's adapter: an OpenAI-compatible endpoint"""
    import contextlib
    from pathlib import Path

    from ..finetune import serve

    target: Any = args.job
    if not Path(args.job).exists():
        target = _finetuner(ctx, "local", args.output_dir).get_job(args.job)
    options = {"host": args.host, "port": args.port, "backend": args.backend}
    with serve(target, max_new_tokens=args.max_new_tokens, **options) as server:
        print(
            f"serving {server.model} (and its base {server.base_model}) at {server.url}; "
            f"Ctrl-C stops",
            file=ctx.err,
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    return 0


# --- end issue 20 ---
