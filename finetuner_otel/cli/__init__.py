"""The ``finetuner`` command line: datasets, SQL, calls, fine-tuning and evals from a shell.

Exit codes: 0 success, 1 an error (one line on stderr saying what is wrong and what to do; the
traceback only with ``--debug``), 2 a usage error.

Each command group is a module (``_datasets``, ``_calls``, ``_finetune``, ``_eval``) and the
top-level commands live with their kin (``_sql``, ``_admin``, ``_servers``); every command is
registered beside its handler (``_command.Group``), and its docstring is its help.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import TextIO

from .._errors import FinetunerError
from ..version import __version__
from . import _admin, _calls, _datasets, _eval, _finetune, _import, _servers, _shadow, _sql
from . import _leakage as _leakage  # issue 22: registers `datasets leakage` in _datasets.GROUP
from ._command import Context, Group
from ._output import printable

__all__ = ["build_parser", "console", "main"]

# In the order `finetuner --help` lists them.
SECTIONS: tuple[Group, ...] = (
    _datasets.GROUP,
    _sql.COMMANDS,
    _calls.GROUP,
    _finetune.GROUP,
    _eval.GROUP,
    _shadow.GROUP,
    _import.GROUP,
    _admin.COMMANDS,
    _servers.COMMANDS,
)
# Options every command takes, before or after its name; unset, they get these defaults.
_COMMON_DEFAULTS = {"json": False, "quiet": False, "debug": False, "output_format": None}


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        default=argparse.SUPPRESS,
        help="the store (default: FINETUNER_DB, then ./finetuner.duckdb)",
    )
    for flags, help in (
        (("--json",), "print JSON, for scripts"),
        (("-q", "--quiet"), "print only the results"),
        (("--debug",), "show the traceback of an error"),
    ):
        common.add_argument(*flags, action="store_true", default=argparse.SUPPRESS, help=help)
    return common


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command: the groups of SECTIONS, each with its own arguments."""
    common = _common()
    parser = argparse.ArgumentParser(
        prog="finetuner",
        description="Datasets, fine-tuning and evals from your app's own OpenAI traffic.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"finetuner {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for section in SECTIONS:
        section.add_to(commands, common)
    return parser


def _parse(argv: Sequence[str] | None, out: TextIO, err: TextIO) -> argparse.Namespace | int:
    """The parsed arguments, or the exit code of a usage error, --help or --version (printed
    where the caller said)."""
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if not hasattr(args, "db"):
        args.db = os.environ.get("FINETUNER_DB")
    for name, default in _COMMON_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    return args


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    """Run one command; returns its exit code."""
    out, err, stdin = out or sys.stdout, err or sys.stderr, stdin or sys.stdin
    args = _parse(argv, out, err)
    if isinstance(args, int):
        return args
    try:
        code: int = args.handler(args, Context(args, out, err, stdin))
        return code
    except (FinetunerError, ValueError, OSError, KeyboardInterrupt) as exc:
        return _failed(exc, args, err)
    except Exception as exc:
        import openai

        if not isinstance(exc, openai.OpenAIError):
            raise
        return _failed(exc, args, err)


def _failed(exc: BaseException, args: argparse.Namespace, err: TextIO) -> int:
    """Report an error as one line (with --debug, its traceback first); the exit code."""
    if args.debug:
        traceback.print_exception(exc, file=err)
    if isinstance(exc, KeyboardInterrupt):
        err.write("interrupted\n")
        return 130
    err.write(f"error: {_one_line(exc)}\n")
    return 1


def _one_line(exc: BaseException) -> str:
    text = printable(str(exc).strip(), keep_newlines=True) or type(exc).__name__
    first, *rest = text.splitlines()
    return first if not rest else f"{first} (--debug or --json for more)"


def console() -> None:
    """The ``finetuner`` console script."""
    sys.exit(main())
