"""``finetuner datasets``: list, show, check, split, export, import and generate datasets."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._messages import last_user_message
from ._command import Arg, Context, Group

if TYPE_CHECKING:
    from ..store import Example, Stats

GROUP = Group("datasets", "list, show, check, split, export and import datasets")
_ENCODING = Arg("--encoding", help="a tiktoken encoding name, e.g. o200k_base")
_MODEL = Arg("--model", help="the model to fine-tune (picks the encoding and context)")


def _question(example: Example) -> Any:
    """The content of an example's last user message, for a table."""
    question = last_user_message(example.messages)
    return question.get("content") if question is not None else ""


@GROUP.command("list")
def datasets_list(args: argparse.Namespace, ctx: Context) -> int:
    """every dataset with its examples, calls and errors"""
    from ..store import reads

    columns = ["name", "examples", "calls", "errors", "first_call_at", "last_call_at"]
    summaries = reads.dataset_summaries(ctx.existing_store())
    ctx.output.rows(columns, [[d[c] for c in columns] for d in summaries])
    return 0


@GROUP.command("show", Arg("name"), Arg("-n", type=int, default=10, help="how many (default 10)"))
def datasets_show(args: argparse.Namespace, ctx: Context) -> int:
    """the first examples of a dataset"""
    dataset = ctx.dataset(args.name)
    examples = dataset.head(args.n)
    ctx.output.rows(
        ["id", "model", "created_at", "input", "completion"],
        [
            [
                e.id,
                e.model,
                e.created_at,
                _question(e),
                e.completion.get("content") or e.completion.get("tool_calls"),
            ]
            for e in examples
        ],
    )
    ctx.output.text(f"{len(examples)} of {len(dataset)} examples")
    return 0


def _stats_record(stats: Stats) -> dict[str, Any]:
    def dist(d: Any) -> Any:
        return (
            None
            if d is None
            else {k: getattr(d, k) for k in ("min", "max", "mean", "median", "p5", "p95")}
        )

    return {
        "examples": stats.examples,
        "messages": dist(stats.messages),
        "encoding": stats.encoding,
        "tokens": dist(stats.tokens),
        "assistant_tokens": dist(stats.assistant_tokens),
        "context": stats.context,
        "over_context": stats.over_context,
        "epochs": stats.epochs,
        "training_tokens": stats.training_tokens,
        "token_note": stats.token_note,
    }


@GROUP.command(
    "stats",
    Arg("name"),
    _MODEL,
    _ENCODING,
    Arg("--epochs", type=int, help="epochs of the estimate (default: OpenAI's)"),
)
def datasets_stats(args: argparse.Namespace, ctx: Context) -> int:
    """counts, token distribution and training-token estimate"""
    stats = ctx.dataset(args.name).stats(args.model, encoding=args.encoding, epochs=args.epochs)
    if ctx.output.mode == "table":
        ctx.output.lines(stats.summary())
    else:
        ctx.output.record(_stats_record(stats))
    return 0


@GROUP.command(
    "validate",
    Arg("name"),
    _MODEL,
    _ENCODING,
    Arg("--limit", type=int, default=10, help="problems to list (default 10)"),
)
def datasets_validate(args: argparse.Namespace, ctx: Context) -> int:
    """OpenAI's fine-tuning data checks (exit 1 on errors)"""
    report = ctx.dataset(args.name).validate(args.model, encoding=args.encoding)
    if ctx.output.mode == "table":
        ctx.output.lines(report.summary(limit=args.limit))
        return 0 if report.ok else 1
    problems = [
        {
            "example": p.example,
            "id": p.example_id,
            "code": p.code,
            "severity": p.severity,
            "detail": p.detail,
        }
        for p in report.problems
    ]
    ctx.output.record(
        {
            "ok": report.ok,
            "examples": report.examples,
            "errors": dict(report.errors),
            "warnings": dict(report.warnings),
            "problems": problems,
            "stats": _stats_record(report.stats),
        }
    )
    return 0 if report.ok else 1


@GROUP.command(
    "split",
    Arg("name"),
    Arg("--train", type=float, default=0.8, help="the train fraction (default 0.8)"),
    Arg("--seed", type=int, default=0),
    Arg("-o", "--output-dir", default=".", help="where to write them (default .)"),
)
def datasets_split(args: argparse.Namespace, ctx: Context) -> int:
    """write train.jsonl and val.jsonl"""
    train, val = ctx.dataset(args.name).split(args.train, seed=args.seed)
    out = Path(args.output_dir)
    exports = [train.to_jsonl(out / "train.jsonl"), val.to_jsonl(out / "val.jsonl")]
    ctx.output.rows(
        ["part", "examples", "path", "snapshot"],
        [
            [part, e.examples, str(e), e.snapshot]
            for part, e in zip(("train", "val"), exports, strict=True)
        ],
    )
    return 0


@GROUP.command(
    "export",
    Arg("name"),
    Arg(
        "--format",
        choices=["openai", "dpo", "parquet", "csv"],
        default="openai",
        help="openai (chat JSONL), dpo (preference pairs), parquet, csv",
    ),
    Arg("-o", "--output", required=True, help="the file to write"),
)
def datasets_export(args: argparse.Namespace, ctx: Context) -> int:
    """export a dataset"""
    store = ctx.existing_store()
    if args.format == "dpo":
        export = store.export_preferences(args.name, args.output)
    else:
        dataset = store.get_dataset(args.name)
        method = {"openai": dataset.to_jsonl, "parquet": dataset.to_parquet, "csv": dataset.to_csv}
        export = method[args.format](args.output)
    ctx.output.record(
        {
            "path": str(export),
            "examples": export.examples,
            "sha256": export.sha256,
            "snapshot": export.snapshot,
        }
    )
    return 0


@GROUP.command(
    "generate",
    Arg("name"),
    Arg("-n", type=int, default=50, help="how many (default 50)"),
    Arg("--model", required=True, help="the model that writes new inputs"),
    Arg("--teacher-model", help="the model that answers them (default --model)"),
    Arg("--instructions", help="what else the new inputs should be like"),
    Arg("--into", help="the dataset to add them to (default NAME)"),
)
def datasets_generate(args: argparse.Namespace, ctx: Context) -> int:
    """synthetic examples in a dataset's style"""
    import openai

    from ..synthetic import generate

    made = generate(
        ctx.dataset(args.name),
        args.n,
        client=openai.OpenAI(),
        model=args.model,
        teacher_model=args.teacher_model,
        instructions=args.instructions,
        into=args.into,
        store=ctx.store,
    )
    ctx.output.rows(
        ["id", "input", "answer"],
        [[e.id, _question(e), e.completion.get("content")] for e in made],
    )
    ctx.output.text(f"{len(made)} synthetic examples added to {args.into or args.name!r}")
    return 0


@GROUP.command(
    "import",
    Arg("file"),
    Arg("--name", required=True, help="the dataset to add the examples to"),
    Arg("--model", help="record this as the examples' model"),
)
def datasets_import(args: argparse.Namespace, ctx: Context) -> int:
    """add an OpenAI chat JSONL file to a dataset"""
    result = ctx.store.import_jsonl(args.file, args.name, model=args.model)
    ctx.output.record(result._asdict())
    if result.added == 0:
        ctx.output.text(f"{args.file} was imported into {args.name!r} before: nothing added")
    return 0
