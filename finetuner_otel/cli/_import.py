"""``finetuner import``: bring calls in from OpenAI's stored completions, OpenPipe and Langfuse."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from .._errors import ConfigurationError
from ._command import Arg, Context, Group

if TYPE_CHECKING:
    from ..importers import ImportSummary

GROUP = Group("import", "calls from OpenAI stored completions, OpenPipe, Langfuse")
_DATASET = Arg("--dataset", help="the dataset of rows whose metadata names none (default: default)")


def _metadata(pairs: list[str] | None) -> dict[str, str] | None:
    """``--metadata key=value`` options as a dict."""
    found: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigurationError(
                f"--metadata takes key=value, e.g. --metadata dataset_name=support; got {pair!r}"
            )
        found[key] = value
    return found or None


def _since(text: str | None) -> float | None:
    """``--since``: a date or time (ISO 8601, UTC unless it says otherwise) or Unix seconds."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError(
            f"--since takes a date or time such as 2026-01-31 or 2026-01-31T12:00:00Z, or "
            f"Unix seconds; got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def _print(ctx: Context, summary: ImportSummary) -> int:
    ctx.output.record(
        {
            "source": summary.source,
            "added": summary.added,
            "skipped": summary.skipped,
            "datasets": summary.datasets,
            **({"pages": summary.pages} if summary.pages else {}),
        }
    )
    return 0


@GROUP.command(
    "openai-stored",
    Arg(
        "--metadata",
        action="append",
        metavar="KEY=VALUE",
        help="only completions with this metadata (repeatable: all must match)",
    ),
    Arg("--model", help="only completions of this model"),
    Arg("--since", help="only completions created at or after this date or time"),
    _DATASET,
)
def import_openai_stored(args: argparse.Namespace, ctx: Context) -> int:
    """OpenAI's stored chat completions (store=True), resumably; OPENAI_API_KEY is used"""
    import openai

    from ..importers import import_openai_stored as run

    summary = run(
        openai.OpenAI(),
        ctx.store,
        metadata=_metadata(args.metadata),
        model=args.model,
        since=_since(args.since),
        dataset=args.dataset,
        progress=ctx.progress(),
    )
    return _print(ctx, summary)


@GROUP.command("openpipe", Arg("file", help="an OpenPipe dataset export (JSONL)"), _DATASET)
def import_openpipe(args: argparse.Namespace, ctx: Context) -> int:
    """an OpenPipe dataset export (JSONL: messages, tools, split)"""
    from ..importers import import_openpipe as run

    return _print(ctx, run(args.file, ctx.store, dataset=args.dataset, progress=ctx.progress()))


@GROUP.command(
    "langfuse", Arg("file", help="a Langfuse observations export (JSON or JSONL)"), _DATASET
)
def import_langfuse(args: argparse.Namespace, ctx: Context) -> int:
    """the generations of a Langfuse observations export (JSON or JSONL)"""
    from ..importers import import_langfuse as run

    return _print(ctx, run(args.file, ctx.store, dataset=args.dataset, progress=ctx.progress()))
