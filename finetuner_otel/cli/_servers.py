"""``finetuner serve`` (the OTLP/HTTP receiver) and ``finetuner ui`` (the web app)."""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets

from .._http import is_loopback
from ._command import Arg, Context, Group

COMMANDS = Group(None)


@COMMANDS.command(
    "serve",
    Arg("--host", default="127.0.0.1", help="default 127.0.0.1; 0.0.0.0 for all"),
    Arg("--port", type=int, default=4318, help="default 4318, OTLP/HTTP's"),
    Arg("--token", help="require this bearer token (or FINETUNER_SERVE_TOKEN)"),
    Arg("--max-body-mb", type=int, default=16, help="largest request (default 16)"),
)
def serve(args: argparse.Namespace, ctx: Context) -> int:
    """receive OTLP/HTTP traces (e.g. from a Collector) into the store"""
    from .._serve import OTLPReceiver

    # Off the loopback the receiver refuses to start without a token (ConfigurationError).
    token = args.token or os.environ.get("FINETUNER_SERVE_TOKEN") or None
    receiver = OTLPReceiver(
        ctx.store.settings.store,
        spool_dir=ctx.store.spool_dir,
        host=args.host,
        port=args.port,
        token=token,
        max_body=args.max_body_mb * 1024 * 1024,
    )
    ctx.err.write(
        f"finetuner serve: OTLP/HTTP traces at {receiver.url} into {ctx.store.location}"
        f"{' (bearer token required)' if token else ''}; Ctrl-C stops\n"
    )
    ctx.err.flush()
    with contextlib.suppress(KeyboardInterrupt):
        receiver.serve_forever()
    ctx.output.text(f"accepted {receiver.accepted} spans, refused {receiver.refused} requests")
    return 0


@COMMANDS.command(
    "ui",
    Arg("--host", default="127.0.0.1", help="default 127.0.0.1 (others need a token)"),
    Arg("--port", type=int, default=8765, help="default 8765; 0 picks a free one"),
    Arg(
        "--read-only",
        action="store_true",
        help="write nothing: no accept, reject or correct, no ingest, no schema upgrade",
    ),
    Arg(
        "--token",
        help="require this token (or FINETUNER_UI_TOKEN); made up off the loopback if not given",
    ),
)
def ui(args: argparse.Namespace, ctx: Context) -> int:
    """browse, review and compare in a local web app"""
    from ..ui import serve as serve_ui

    token = args.token or os.environ.get("FINETUNER_UI_TOKEN") or None
    if token is None and not is_loopback(args.host):
        token = secrets.token_urlsafe(24)  # off the loopback, never without one

    def ready(url: str) -> None:
        ctx.err.write(
            f"finetuner ui: {ctx.store.location}{' (read-only)' if args.read_only else ''} at\n"
            f"    {url}\nCtrl-C stops\n"
        )
        ctx.err.flush()

    with contextlib.suppress(KeyboardInterrupt):
        serve_ui(
            ctx.store,
            host=args.host,
            port=args.port,
            read_only=args.read_only,
            token=token,
            on_ready=ready,
        )
    return 0
