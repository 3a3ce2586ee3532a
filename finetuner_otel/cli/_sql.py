"""``finetuner sql``: read-only SQL over the store."""

from __future__ import annotations

import argparse

from .._errors import ConfigurationError
from ._command import Arg, Context, Group, OneOf

COMMANDS = Group(None)


def _format(flag: str, value: str) -> Arg:
    return Arg(
        flag,
        dest="output_format",
        action="store_const",
        const=value,
        default=argparse.SUPPRESS,
        help=f"print as {value}",
    )


@COMMANDS.command(
    "sql",
    Arg("query", nargs="?", help='e.g. "SELECT * FROM datasets"; - or none: stdin'),
    OneOf(_format("--table", "table"), _format("--csv", "csv"), _format("--nl", "nl")),
)
def sql(args: argparse.Namespace, ctx: Context) -> int:
    """read-only SQL over the store (or the SQL on stdin)"""
    query = args.query if args.query not in (None, "-") else ctx.stdin.read()
    if not query.strip():
        raise ConfigurationError(
            'give a SQL statement, e.g. finetuner sql "SELECT * FROM datasets"'
        )
    result = ctx.existing_store().sql(query)
    if args.output_format is None and not args.json:  # a table on a terminal, JSON for pipes
        tty = getattr(ctx.output.out, "isatty", lambda: False)()
        ctx.output.mode = "table" if tty else "json"
    ctx.output.rows(result.columns, result.rows)
    return 0
