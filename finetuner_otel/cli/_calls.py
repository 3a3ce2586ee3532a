"""``finetuner calls``: list, show and give feedback on recorded calls."""

from __future__ import annotations

import argparse

from .._errors import ConfigurationError
from ._command import Arg, Context, Group

GROUP = Group("calls", "list, show and give feedback on recorded calls")

_LIST_COLUMNS = [
    "id",
    "dataset",
    "started_at",
    "request_model",
    "status",
    "trainable",
    "input_tokens",
    "output_tokens",
    "completion",
]
_SHOW_COLUMNS = [
    "id",
    "dataset",
    "started_at",
    "duration_ms",
    "provider",
    "request_model",
    "response_model",
    "status",
    "error_type",
    "error_message",
    "trainable",
    "untrainable_reason",
    "input_tokens",
    "output_tokens",
    "messages",
    "completion",
    "tools",
    "request_options",
]


@GROUP.command(
    "list",
    Arg("--dataset"),
    Arg("--status", choices=["ok", "error", "incomplete"]),
    Arg("-n", type=int, default=20),
)
def calls_list(args: argparse.Namespace, ctx: Context) -> int:
    """the latest calls"""
    from ..store import reads

    filters = reads.CallFilters(args.dataset, status=args.status or "")
    page = reads.list_calls(ctx.existing_store(), filters, size=args.n)
    ctx.output.rows(_LIST_COLUMNS, [[row[c] for c in _LIST_COLUMNS] for row in page.rows])
    return 0


@GROUP.command("show", Arg("id"))
def calls_show(args: argparse.Namespace, ctx: Context) -> int:
    """one call, whole (by id or a unique prefix)"""
    from ..store import reads

    store = ctx.existing_store()
    ids = reads.call_ids_starting(store, args.id)
    if len(ids) != 1:
        raise ConfigurationError(
            f"{'no call' if not ids else 'several calls'} with id {args.id!r}; ids are in "
            f"`finetuner calls list`"
        )
    call = store.get_call(ids[0]).to_dict()
    ctx.output.record({key: call[key] for key in _SHOW_COLUMNS})
    return 0


_NOTE = Arg("--note")


@GROUP.command("reject", Arg("id"), _NOTE, help="keep a call out of exports", verdict="reject")
@GROUP.command("accept", Arg("id"), _NOTE, help="mark a call good", verdict="accept")
def calls_verdict(args: argparse.Namespace, ctx: Context) -> int:
    """accept or reject a call"""
    getattr(ctx.existing_store(), args.verdict)(args.id, note=args.note)
    ctx.output.text(f"{args.verdict}: {args.id}")
    return 0


@GROUP.command(
    "correct",
    Arg("id"),
    Arg("--completion", required=True, help="the text, or - to read it from stdin"),
    _NOTE,
)
def calls_correct(args: argparse.Namespace, ctx: Context) -> int:
    """train on a corrected completion"""
    completion = args.completion if args.completion != "-" else ctx.stdin.read().rstrip("\n")
    ctx.existing_store().correct(args.id, completion, note=args.note)
    ctx.output.text(f"correct: {args.id}")
    return 0
