"""``finetuner eval``: run, show, compare and report evals."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError
from ._command import Arg, Context, Group

if TYPE_CHECKING:
    from ..eval import Eval, EvalResult

GROUP = Group("eval", "run, show, compare and report evals")


def _eval_class(spec: str) -> type[Eval]:
    """A built-in eval by name, or the Eval subclass ``path/to/file.py:ClassName``."""
    from ..eval import BUILTIN, Eval

    if spec in BUILTIN:
        return BUILTIN[spec]
    path, _, name = spec.rpartition(":")
    if not path or not name:
        raise ConfigurationError(
            f"an eval is one of {', '.join(BUILTIN)} or path/to/file.py:ClassName, got {spec!r}"
        )
    if not Path(path).is_file():
        raise ConfigurationError(f"no file {path} for the eval {spec!r}")
    module_spec = importlib.util.spec_from_file_location(f"finetuner_eval_{Path(path).stem}", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Eval)):
        raise ConfigurationError(f"{path} defines no Eval subclass named {name!r}")
    return cls


def _print_run(ctx: Context, result: EvalResult) -> None:
    low, high = result.ci95
    ctx.output.record(
        {
            "run": result.run_id,
            "eval": result.eval_name,
            "model": result.model,
            "dataset": result.dataset,
            "accuracy": result.accuracy,
            "ci95": [low, high],
            "scored": result.n,
            "failed": result.failures,
            "errors": result.errors,
            "calls": result.calls,
            "cached": result.cached,
        }
    )


@GROUP.command(
    "run",
    Arg("eval", help="exact, json, tool-call, judge, or path/to/file.py:ClassName"),
    Arg("--model", required=True),
    Arg("--dataset", required=True),
    Arg("--concurrency", type=int, default=8),
    Arg("--temperature", type=float),
    Arg("--judge-model", help="judge: the model that grades"),
    Arg("--rubric", help="judge: what a good answer is"),
)
def eval_run(args: argparse.Namespace, ctx: Context) -> int:
    """score a model on a dataset"""
    import openai

    from ..eval import JudgeEval

    cls = _eval_class(args.eval)
    dataset = ctx.dataset(args.dataset)
    options: dict[str, Any] = {
        "store": ctx.store,
        "concurrency": args.concurrency,
        "progress": ctx.progress(),
    }
    if args.judge_model:
        options["judge_model"] = args.judge_model
    if args.rubric:
        options["rubric"] = args.rubric
    if issubclass(cls, JudgeEval) and "judge_model" not in options:
        raise ConfigurationError("the judge eval needs --judge-model")
    params = {"temperature": args.temperature} if args.temperature is not None else {}
    result = cls(openai.OpenAI(), **options).run(args.model, dataset, **params)
    _print_run(ctx, result)
    return 0


@GROUP.command("show", Arg("run"))
def eval_show(args: argparse.Namespace, ctx: Context) -> int:
    """a stored run"""
    from ..eval import load_run

    result = load_run(ctx.existing_store(), args.run)
    _print_run(ctx, result)
    if ctx.output.mode == "table" and not ctx.output.quiet:
        ctx.output.out.write("\n")
        ctx.output.rows(
            ["#", "call", "target", "prediction", "score", "status"],
            [
                [r.position + 1, r.example_id, r.target, r.prediction, r.score, r.status]
                for r in result.results
            ],
        )
    return 0


@GROUP.command("compare", Arg("baseline"), Arg("candidate"))
def eval_compare(args: argparse.Namespace, ctx: Context) -> int:
    """two runs, paired, with a p-value"""
    from ..eval import load_run

    store = ctx.existing_store()
    baseline, candidate = load_run(store, args.baseline), load_run(store, args.candidate)
    comparison = candidate.compare_to(baseline)
    if ctx.output.mode == "table":
        ctx.output.lines(comparison.summary())
        return 0
    low, high = comparison.ci95
    ctx.output.record(
        {
            "baseline": baseline.run_id,
            "candidate": candidate.run_id,
            "pairs": comparison.n,
            "baseline_accuracy": comparison.baseline_accuracy,
            "candidate_accuracy": comparison.candidate_accuracy,
            "difference": comparison.difference,
            "ci95": [low, high],
            "wins": comparison.wins,
            "losses": comparison.losses,
            "ties": comparison.ties,
            "test": comparison.test,
            "p_value": comparison.p_value,
        }
    )
    return 0


@GROUP.command("report", Arg("runs", nargs="+"), Arg("-o", "--output", required=True))
def eval_report(args: argparse.Namespace, ctx: Context) -> int:
    """an HTML report of runs (the first against the rest)"""
    from ..eval import load_run

    store = ctx.existing_store()
    runs = [load_run(store, run) for run in args.runs]
    path = runs[0].report(args.output, *runs[1:])
    ctx.output.record({"report": str(path), "runs": [r.run_id for r in runs]})
    return 0
