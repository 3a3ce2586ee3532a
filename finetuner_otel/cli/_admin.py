"""``finetuner ingest``, ``doctor`` and ``demo``: the store's upkeep and a first look."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from .._distro import launcher_plan
from .._errors import ConfigurationError
from ..version import __version__
from ._command import Arg, Context, Group

COMMANDS = Group(None)
_ENTRY_POINT_GROUPS = (
    "opentelemetry_instrumentor",
    "opentelemetry_traces_exporter",
    "opentelemetry_distro",
    "opentelemetry_configurator",
)
_PACKAGES = (
    "openai",
    "duckdb",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation",
    "tiktoken",
    "trl",
    "torch",
)


@COMMANDS.command("ingest")
def ingest(args: argparse.Namespace, ctx: Context) -> int:
    """move spooled calls into the store now"""
    files = ctx.store.ingest()
    ctx.output.record({"ingested_files": files, "pending_files": ctx.store.pending()})
    return 0


@COMMANDS.command(
    "compact",
    Arg("--min-files", type=int, default=8, help="rewrite partitions of this many files (8)"),
)
def compact(args: argparse.Namespace, ctx: Context) -> int:
    """an Iceberg store's upkeep: merge small files"""
    if args.min_files < 1:
        raise ConfigurationError(f"--min-files must be 1 or more, got {args.min_files}")
    report = ctx.store.compact(min_files=args.min_files)
    ctx.output.record(report)
    return 0


def _installed(name: str) -> str | None:
    from importlib.metadata import version

    try:
        return version(name)
    except Exception:
        return None


def _entry_points() -> dict[str, list[str]]:
    """Our entry points in each OpenTelemetry group, as this environment has them."""
    from importlib.metadata import entry_points

    return {
        group: sorted(
            ep.name for ep in entry_points(group=group) if ep.value.startswith("finetuner_otel")
        )
        for group in _ENTRY_POINT_GROUPS
    }


def _dropped(spool_dir: Path) -> int:
    """Spans exporters could not keep (disk full, an unwritable spool), as they recorded it."""
    total = 0
    for path in spool_dir.glob("dropped-*.json") if spool_dir.is_dir() else ():
        try:
            total += int(json.loads(path.read_text())["spans_dropped"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return total


@COMMANDS.command("doctor")
def doctor(args: argparse.Namespace, ctx: Context) -> int:
    """versions, the store, the spool, the OTel entry points"""
    store = ctx.store
    schema = store.schema_status()  # read as it is: the doctor changes nothing
    found = _entry_points()
    record: dict[str, Any] = {
        "finetuner-otel": __version__,
        "python": sys.version.split()[0],
        "packages": {name: _installed(name) for name in _PACKAGES},
        "store": store.location,
        "store_exists": store.exists(),
        "schema": f"{len(schema.applied)} of {len(schema.known)} migrations applied"
        + ("" if schema.up_to_date or not store.exists() else " (a write upgrades it)"),
        "spool": str(store.spool_dir),
        "spool_backlog_files": store.pending(),
        "spans_dropped": _dropped(store.spool_dir),
        "entry_points": found,
        "launcher": launcher_plan(),
    }
    ctx.output.record(record)
    missing = [group for group, names in found.items() if not names]
    if missing:
        ctx.err.write(
            f"warning: entry points not found: {', '.join(missing)}; reinstall finetuner-otel "
            f"(pip install finetuner-otel) in this environment\n"
        )
        return 1
    return 0


@COMMANDS.command("demo")
def demo(args: argparse.Namespace, ctx: Context) -> int:
    """the README's demo, on the local OpenAI-compatible server"""
    from ..examples.quickstart import main as quickstart

    if args.db:
        os.environ["FINETUNER_DB"] = str(args.db)
    with contextlib.redirect_stdout(ctx.output.out):
        quickstart()
    return 0
