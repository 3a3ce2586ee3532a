"""``finetuner shadow``: how a shadowed candidate compares with production on live traffic."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ._command import Arg, Context, Group
from ._eval import _eval_class

if TYPE_CHECKING:
    from ..eval import ShadowReport

GROUP = Group("shadow", "a candidate model beside production on live traffic")
_WHICH = (
    Arg("--dataset", required=True),
    Arg("--candidate", required=True, help="the candidate model that was shadowed"),
    Arg("--eval", default="exact", help="exact, json, tool-call, or path/to/file.py:ClassName"),
)


def _report(args: argparse.Namespace, ctx: Context) -> ShadowReport:
    from ..eval import shadow_report

    evaluator = _eval_class(args.eval)(None)  # type: ignore[arg-type]  # compares; calls nothing
    return shadow_report(ctx.existing_store(), args.dataset, args.candidate, eval=evaluator)


@GROUP.command("status", *_WHICH)
def shadow_status(args: argparse.Namespace, ctx: Context) -> int:
    """the live agreement with production, and its interval"""
    report = _report(args, ctx)
    record = report.to_dict()
    disagreements = record.pop("disagreements")
    record["disagreements"] = len(disagreements)
    ctx.output.record(record)
    return 0


@GROUP.command("review", *_WHICH)
def shadow_review(args: argparse.Namespace, ctx: Context) -> int:
    """the calls the candidate answered otherwise, to review"""
    report = _report(args, ctx)
    ctx.output.rows(["call"], [[call] for call in report.disagreements])
    return 0
