"""``finetuner datasets leakage A B``: the examples of B whose input is also in A.

A command of the ``datasets`` group, registered here beside its handler (the group is
``_datasets.GROUP``).
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from ._command import Arg, Context
from ._datasets import GROUP

if TYPE_CHECKING:
    from ..store import Dataset, Store

_SNAPSHOT = re.compile(r"[0-9a-f]{8,64}")


def _dataset_or_snapshot(store: Store, name: str) -> Dataset:
    """A dataset by name, else a snapshot by (a prefix of) its id."""
    if name not in {d.name for d in store.list_datasets()} and _SNAPSHOT.fullmatch(name):
        return store.get_snapshot(name)
    return store.get_dataset(name)


@GROUP.command(
    "leakage",
    Arg("a", help="a dataset or snapshot id (e.g. the training set)"),
    Arg("b", help="a dataset or snapshot id (e.g. the eval set)"),
    Arg("--threshold", type=float, default=0.7, help="near: Jaccard at least (default 0.7)"),
    Arg("--shingle", type=int, default=3, help="near: words per shingle (default 3)"),
    Arg("--exact-only", action="store_true", help="exact repeats only (no datasketch needed)"),
    Arg("-n", type=int, default=5, help="matches to show of each kind (default 5)"),
)
def datasets_leakage(args: argparse.Namespace, ctx: Context) -> int:
    """inputs of B also in A, exactly or nearly (leakage)"""
    store = ctx.existing_store()
    a = _dataset_or_snapshot(store, args.a)
    b = _dataset_or_snapshot(store, args.b)
    report = a.leakage(b, near=not args.exact_only, threshold=args.threshold, shingle=args.shingle)
    if ctx.output.mode in ("json", "nl"):
        ctx.output.record(report.to_dict())
        return 0
    ctx.output.text(report.summary())
    shown = [*report.exact[: args.n], *report.near[: args.n]]
    ctx.output.rows(
        ["kind", "similarity", args.a, args.b, "input"],
        [[o.kind, round(o.similarity, 3), o.example, o.other, o.other_text] for o in shown],
    )
    return 0
