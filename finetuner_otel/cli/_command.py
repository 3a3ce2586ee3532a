"""What every command shares: its ``Context``, and how a group registers its commands.

A command is a handler ``(args, ctx) -> exit code``, registered beside its definition with
``@group.command(name, *arguments)``; its docstring is its help. ``Group.add_to`` turns the
registrations into argparse subcommands.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from .._errors import ConfigurationError
from ._output import Output

if TYPE_CHECKING:
    from ..store import Dataset, Store

Handler = Callable[[argparse.Namespace, "Context"], int]


class Context:
    """What every command gets: the store, the output, and stdin."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> None:
        self.args = args
        self.err = err
        self.stdin = stdin
        mode = args.output_format or ("json" if args.json else "table")
        self.output = Output(mode, quiet=args.quiet, out=out)
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        """The store of ``--db`` (or FINETUNER_DB), opened on first use."""
        if self._store is None:
            from ..store import Store

            self._store = Store(self.args.db)
        return self._store

    def existing_store(self) -> Store:
        """The store, or a ConfigurationError saying how to make one if nothing is there."""
        store = self.store
        if not store.exists() and not store.pending():
            raise ConfigurationError(
                f"no store at {store.location}; capture some calls first "
                f"(finetuner_otel.instrument()), pass --db PATH, or set FINETUNER_DB"
            )
        return store

    def dataset(self, name: str) -> Dataset:
        """A dataset of the existing store (DatasetNotFoundError names the ones there are)."""
        return self.existing_store().get_dataset(name)

    def progress(self) -> bool | TextIO:
        """Where progress goes: stderr, or nowhere with -q."""
        return False if self.args.quiet else self.err


@dataclass(frozen=True)
class Arg:
    """One ``add_argument`` call: ``Arg("--model", required=True, help=...)``."""

    flags: tuple[str, ...]
    options: dict[str, Any]

    def __init__(self, *flags: str, **options: Any) -> None:
        object.__setattr__(self, "flags", flags)
        object.__setattr__(self, "options", options)

    def add_to(self, parser: argparse.ArgumentParser | Any) -> None:
        parser.add_argument(*self.flags, **self.options)


@dataclass(frozen=True)
class OneOf:
    """Arguments of which at most one may be given (a mutually exclusive group)."""

    arguments: tuple[Arg, ...]

    def __init__(self, *arguments: Arg) -> None:
        object.__setattr__(self, "arguments", arguments)

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_mutually_exclusive_group()
        for argument in self.arguments:
            argument.add_to(group)


@dataclass(frozen=True)
class Command:
    name: str
    handler: Handler
    arguments: Sequence[Arg | OneOf]
    help: str
    defaults: dict[str, Any]


@dataclass
class Group:
    """A command group (``finetuner datasets ...``), or with no name the top-level commands
    a module adds (``finetuner sql``)."""

    name: str | None
    help: str = ""
    commands: list[Command] = field(default_factory=list)

    def command(
        self, name: str, *arguments: Arg | OneOf, help: str | None = None, **defaults: Any
    ) -> Callable[[Handler], Handler]:
        """Register the decorated handler as command ``name``, with its ``arguments`` and
        ``defaults`` (set on the parsed arguments); the help is the docstring's first line."""

        def register(handler: Handler) -> Handler:
            text = help or (handler.__doc__ or "").strip().splitlines()[0]
            self.commands.append(Command(name, handler, arguments, text, defaults))
            return handler

        return register

    def add_to(self, subparsers: Any, common: argparse.ArgumentParser) -> None:
        """Add this group (or its commands, at the top level) to ``subparsers``."""
        target = subparsers
        if self.name is not None:
            parser = subparsers.add_parser(
                self.name, help=self.help, description=self.help, parents=[common]
            )
            target = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
        for command in self.commands:
            sub: argparse.ArgumentParser = target.add_parser(
                command.name, help=command.help, description=command.help, parents=[common]
            )
            for argument in command.arguments:
                argument.add_to(sub)
            sub.set_defaults(handler=command.handler, **command.defaults)
