"""The ``finetuner`` command line: datasets, SQL, calls, fine-tuning and evals from a shell.

Exit codes: 0 success, 1 an error (one line on stderr saying what is wrong and what to do; the
traceback only with ``--debug``), 2 a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from .._errors import ConfigurationError, FinetunerError
from .._messages import last_user_message
from ..version import __version__
from ._output import Output

Handler = Callable[[argparse.Namespace, "Context"], int]


class Context:
    """What every command gets: the store, the output, and stdin."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> None:
        self.args = args
        self.err = err
        self.stdin = stdin
        mode = args.output_format or ("json" if args.json else "table")
        self.output = Output(mode, quiet=args.quiet, out=out)
        self._store: Any = None

    @property
    def store(self) -> Any:
        if self._store is None:
            from ..store import Store

            self._store = Store(self.args.db)
        return self._store

    def existing_store(self) -> Any:
        store = self.store
        if not store.path.exists() and not store.pending():
            raise ConfigurationError(
                f"no store at {store.path}; capture some calls first (finetuner_otel.instrument()"
                f"), pass --db PATH, or set FINETUNER_DB"
            )
        return store

    def progress(self) -> bool | TextIO:
        return False if self.args.quiet else self.err


# --- datasets -------------------------------------------------------------------------------


def _question(example: Any) -> Any:
    """The content of an example's last user message, for a table."""
    question = last_user_message(example.messages)
    return question.get("content") if question is not None else ""


def _dataset(ctx: Context, name: str) -> Any:
    return ctx.existing_store().get_dataset(name)


def datasets_list(args: argparse.Namespace, ctx: Context) -> int:
    store = ctx.existing_store()
    rows = store.sql(
        "SELECT name, examples, calls, errors, first_call_at, last_call_at FROM datasets "
        "ORDER BY name"
    )
    ctx.output.rows(rows.columns, rows.rows)
    return 0


def datasets_show(args: argparse.Namespace, ctx: Context) -> int:
    dataset = _dataset(ctx, args.name)
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


def _stats_record(stats: Any) -> dict[str, Any]:
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


def datasets_stats(args: argparse.Namespace, ctx: Context) -> int:
    stats = _dataset(ctx, args.name).stats(args.model, encoding=args.encoding, epochs=args.epochs)
    if ctx.output.mode == "table":
        ctx.output.out.write(stats.summary() + "\n")
    else:
        ctx.output.record(_stats_record(stats))
    return 0


def datasets_validate(args: argparse.Namespace, ctx: Context) -> int:
    report = _dataset(ctx, args.name).validate(args.model, encoding=args.encoding)
    if ctx.output.mode == "table":
        ctx.output.out.write(report.summary(limit=args.limit) + "\n")
    else:
        ctx.output.record(
            {
                "ok": report.ok,
                "examples": report.examples,
                "errors": dict(report.errors),
                "warnings": dict(report.warnings),
                "problems": [
                    {
                        "example": p.example,
                        "id": p.example_id,
                        "code": p.code,
                        "severity": p.severity,
                        "detail": p.detail,
                    }
                    for p in report.problems
                ],
                "stats": _stats_record(report.stats),
            }
        )
    return 0 if report.ok else 1


def datasets_split(args: argparse.Namespace, ctx: Context) -> int:
    dataset = _dataset(ctx, args.name)
    train, val = dataset.split(args.train, seed=args.seed)
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


def datasets_export(args: argparse.Namespace, ctx: Context) -> int:
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


def datasets_import(args: argparse.Namespace, ctx: Context) -> int:
    result = ctx.store.import_jsonl(args.file, args.name, model=args.model)
    ctx.output.record(result._asdict())
    if result.added == 0:
        ctx.output.text(f"{args.file} was imported into {args.name!r} before: nothing added")
    return 0


def datasets_generate(args: argparse.Namespace, ctx: Context) -> int:
    import openai

    from ..synthetic import generate

    made = generate(
        _dataset(ctx, args.name),
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
        [
            [
                e.id,
                _question(e),
                e.completion.get("content"),
            ]
            for e in made
        ],
    )
    ctx.output.text(f"{len(made)} synthetic examples added to {args.into or args.name!r}")
    return 0


# --- sql --------------------------------------------------------------------------------------


def sql(args: argparse.Namespace, ctx: Context) -> int:
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


# --- calls ------------------------------------------------------------------------------------


def calls_list(args: argparse.Namespace, ctx: Context) -> int:
    clauses, params = ["true"], []
    for value, clause in ((args.dataset, "dataset = ?"), (args.status, "status = ?")):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    result = ctx.existing_store().sql(
        "SELECT id, dataset, started_at, request_model, status, trainable, input_tokens, "
        "output_tokens, completion->>'content' AS completion FROM calls WHERE "
        + " AND ".join(clauses)
        + " ORDER BY started_at DESC, id LIMIT ?",
        [*params, args.n],
    )
    ctx.output.rows(result.columns, result.rows)
    return 0


def calls_show(args: argparse.Namespace, ctx: Context) -> int:
    result = ctx.existing_store().sql(
        "SELECT id, dataset, started_at, duration_ms, provider, request_model, response_model, "
        "status, error_type, error_message, trainable, untrainable_reason, input_tokens, "
        "output_tokens, messages, completion, tools, request_options FROM calls "
        "WHERE starts_with(id, ?)",
        [args.id],
    )
    if len(result) != 1:
        raise ConfigurationError(
            f"{'no call' if not result else 'several calls'} with id {args.id!r}; ids are in "
            f"`finetuner calls list`"
        )
    record = dict(zip(result.columns, result.rows[0], strict=True))
    for key in ("messages", "completion", "tools", "request_options"):
        if isinstance(record[key], str):
            record[key] = json.loads(record[key])
    ctx.output.record(record)
    return 0


def calls_feedback(args: argparse.Namespace, ctx: Context) -> int:
    store = ctx.existing_store()
    if args.verdict == "correct":
        completion = args.completion if args.completion != "-" else ctx.stdin.read().rstrip("\n")
        store.correct(args.id, completion, note=args.note)
    else:
        getattr(store, args.verdict)(args.id, note=args.note)
    ctx.output.text(f"{args.verdict}: {args.id}")
    return 0


# --- finetune ---------------------------------------------------------------------------------


def _finetuner(ctx: Context, provider: str, output_dir: str | None = None) -> Any:
    from ..finetune import Finetuner

    if provider == "openai":
        return Finetuner.for_openai(store=ctx.store)
    if provider == "together":
        return Finetuner.for_together(store=ctx.store)
    if provider == "local":
        return Finetuner.for_local(output_dir or "finetuner-models", store=ctx.store)
    raise ConfigurationError(f"provider is openai, together or local, got {provider!r}")


def _job_provider(ctx: Context, job_id: str) -> str:
    rows = (
        ctx.existing_store()
        .sql("SELECT DISTINCT provider FROM finetune_jobs WHERE job_id = ?", [job_id])
        .rows
    )
    if not rows:
        raise ConfigurationError(
            f"no job {job_id!r} in {ctx.store.path}; pass --provider to ask the provider directly"
        )
    provider = rows[0][0]
    return provider if provider in ("openai", "together", "local") else "openai"


def _job_record(job: Any) -> dict[str, Any]:
    s = job.state
    return {
        "id": s.id,
        "provider": s.provider,
        "base_model": s.base_model,
        "status": s.status,
        "provider_status": s.provider_status,
        "fine_tuned_model": s.fine_tuned_model,
        "error": s.error,
        "trained_tokens": s.trained_tokens,
        "created_at": s.created_at,
        "finished_at": s.finished_at,
        "method": s.method,
        "hyperparameters": dict(s.hyperparameters),
    }


def finetune_start(args: argparse.Namespace, ctx: Context) -> int:
    dataset = _dataset(ctx, args.dataset)
    if args.val_split:
        train, val = dataset.split(1 - args.val_split, seed=args.seed)
    else:
        train, val = dataset, None
    ft = _finetuner(ctx, args.provider, args.output_dir)
    train_id = ft.upload_dataset(train)
    val_id = ft.upload_dataset(val) if val is not None and len(val) else None
    hyper = {"n_epochs": args.epochs} if args.epochs else {}
    job = ft.start_job(args.model, train_id, val_id, suffix=args.suffix, **hyper)
    if args.wait:
        job.wait(poll=args.poll, progress=ctx.progress())
    ctx.output.record(_job_record(job))
    return 0 if job.state.status != "failed" else 1


def finetune_status(args: argparse.Namespace, ctx: Context) -> int:
    provider = args.provider or _job_provider(ctx, args.job)
    ft = _finetuner(ctx, provider, args.output_dir)
    job = ft.get_job(args.job)
    if args.action == "wait":
        job.wait(poll=args.poll, progress=ctx.progress(), raise_on_failure=False)
    elif args.action == "cancel":
        job.cancel()
    ctx.output.record(_job_record(job))
    return 1 if args.action == "wait" and job.state.status != "succeeded" else 0


def finetune_list(args: argparse.Namespace, ctx: Context) -> int:
    result = ctx.existing_store().sql(
        "SELECT provider, job_id, base_model, method, status, fine_tuned_model, dataset, "
        "training_examples, created_at FROM finetune_lineage ORDER BY created_at DESC"
    )
    ctx.output.rows(result.columns, result.rows)
    return 0


# --- eval -------------------------------------------------------------------------------------


def _eval_class(spec: str) -> type:
    from ..eval import BUILTIN, Eval

    if spec in BUILTIN:
        return BUILTIN[spec]
    path, _, name = spec.rpartition(":")
    if not path or not name:
        raise ConfigurationError(
            f"an eval is one of {', '.join(BUILTIN)} or path/to/file.py:ClassName, got {spec!r}"
        )
    if not Path(path).is_file():
        raise ConfigurationError(f"no file {path} for the eval {spec!r}")
    module_spec = importlib.util.spec_from_file_location(f"finetuner_eval_{Path(path).stem}", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Eval)):
        raise ConfigurationError(f"{path} defines no Eval subclass named {name!r}")
    return cls


def eval_run(args: argparse.Namespace, ctx: Context) -> int:
    import openai

    cls = _eval_class(args.eval)
    dataset = _dataset(ctx, args.dataset)
    client = openai.OpenAI()
    options: dict[str, Any] = {
        "store": ctx.store,
        "concurrency": args.concurrency,
        "progress": ctx.progress(),
    }
    if args.judge_model:
        options["judge_model"] = args.judge_model
    if args.rubric:
        options["rubric"] = args.rubric
    from ..eval import JudgeEval

    if issubclass(cls, JudgeEval) and "judge_model" not in options:
        raise ConfigurationError("the judge eval needs --judge-model")
    params = {"temperature": args.temperature} if args.temperature is not None else {}
    result = cls(client, **options).run(args.model, dataset, **params)
    _print_run(ctx, result)
    return 0


def _print_run(ctx: Context, result: Any) -> None:
    low, high = result.ci95
    ctx.output.record(
        {
            "run": result.run_id,
            "eval": result.eval_name,
            "model": result.model,
            "dataset": result.dataset,
            "accuracy": result.accuracy,
            "ci95": [low, high],
            "scored": result.n,
            "failed": result.failures,
            "errors": result.errors,
            "calls": result.calls,
            "cached": result.cached,
        }
    )


def eval_show(args: argparse.Namespace, ctx: Context) -> int:
    from ..eval import load_run

    result = load_run(ctx.existing_store(), args.run)
    _print_run(ctx, result)
    if ctx.output.mode == "table" and not ctx.output.quiet:
        ctx.output.out.write("\n")
        ctx.output.rows(
            ["#", "call", "target", "prediction", "score", "status"],
            [
                [r.position + 1, r.example_id, r.target, r.prediction, r.score, r.status]
                for r in result.results
            ],
        )
    return 0


def eval_compare(args: argparse.Namespace, ctx: Context) -> int:
    from ..eval import load_run

    store = ctx.existing_store()
    baseline, candidate = load_run(store, args.baseline), load_run(store, args.candidate)
    comparison = candidate.compare_to(baseline)
    low, high = comparison.ci95
    if ctx.output.mode == "table":
        ctx.output.out.write(comparison.summary() + "\n")
    else:
        ctx.output.record(
            {
                "baseline": baseline.run_id,
                "candidate": candidate.run_id,
                "pairs": comparison.n,
                "baseline_accuracy": comparison.baseline_accuracy,
                "candidate_accuracy": comparison.candidate_accuracy,
                "difference": comparison.difference,
                "ci95": [low, high],
                "wins": comparison.wins,
                "losses": comparison.losses,
                "ties": comparison.ties,
                "test": comparison.test,
                "p_value": comparison.p_value,
            }
        )
    return 0


def eval_report(args: argparse.Namespace, ctx: Context) -> int:
    from ..eval import load_run

    store = ctx.existing_store()
    runs = [load_run(store, run) for run in args.runs]
    path = runs[0].report(args.output, *runs[1:])
    ctx.output.record({"report": str(path), "runs": [r.run_id for r in runs]})
    return 0


# --- the rest ---------------------------------------------------------------------------------


def ingest(args: argparse.Namespace, ctx: Context) -> int:
    files = ctx.store.ingest()
    ctx.output.record({"ingested_files": files, "pending_files": ctx.store.pending()})
    return 0


def doctor(args: argparse.Namespace, ctx: Context) -> int:
    from importlib.metadata import entry_points, version

    from ..store._schema import MIGRATIONS

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except Exception:
            return None

    store = ctx.store
    applied: list[str] = []
    if store.path.exists():
        applied = [r[0] for r in store.sql("SELECT name FROM finetuner_migrations ORDER BY name")]
    found = {
        group: sorted(
            ep.name for ep in entry_points(group=group) if ep.value.startswith("finetuner_otel")
        )
        for group in (
            "opentelemetry_instrumentor",
            "opentelemetry_traces_exporter",
            "opentelemetry_distro",
            "opentelemetry_configurator",
        )
    }
    record = {
        "finetuner-otel": __version__,
        "python": sys.version.split()[0],
        "packages": {
            name: installed(name)
            for name in (
                "openai",
                "duckdb",
                "opentelemetry-sdk",
                "opentelemetry-instrumentation",
                "tiktoken",
                "trl",
                "torch",
            )
        },
        "store": str(store.path),
        "store_exists": store.path.exists(),
        "schema": f"{len(applied)} of {len(MIGRATIONS)} migrations applied",
        "spool": str(store.spool_dir),
        "spool_backlog_files": store.pending(),
        "spans_dropped": _dropped(store.spool_dir),
        "entry_points": found,
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


def serve(args: argparse.Namespace, ctx: Context) -> int:
    from .._serve import OTLPReceiver

    token = args.token or os.environ.get("FINETUNER_SERVE_TOKEN") or None
    receiver = OTLPReceiver(
        ctx.store.path,
        host=args.host,
        port=args.port,
        token=token,
        max_body=args.max_body_mb * 1024 * 1024,
    )
    ctx.err.write(
        f"finetuner serve: OTLP/HTTP traces at {receiver.url} into {ctx.store.path}"
        f"{' (bearer token required)' if token else ''}; Ctrl-C stops\n"
    )
    ctx.err.flush()
    with contextlib.suppress(KeyboardInterrupt):
        receiver.serve_forever()
    ctx.output.text(f"accepted {receiver.accepted} spans, refused {receiver.refused} requests")
    return 0


def ui(args: argparse.Namespace, ctx: Context) -> int:
    import secrets

    from ..ui import serve as serve_ui
    from ..ui._app import _loopback

    token = args.token or os.environ.get("FINETUNER_UI_TOKEN") or None
    if token is None and not _loopback(args.host):
        token = secrets.token_urlsafe(24)  # off the loopback, never without one

    def ready(url: str) -> None:
        ctx.err.write(
            f"finetuner ui: {ctx.store.path}{' (read-only)' if args.read_only else ''} at\n"
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


def _dropped(spool_dir: Path) -> int:
    """Spans exporters could not keep (disk full, an unwritable spool), as they recorded it."""
    total = 0
    for path in spool_dir.glob("dropped-*.json") if spool_dir.is_dir() else ():
        try:
            total += int(json.loads(path.read_text())["spans_dropped"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return total


def demo(args: argparse.Namespace, ctx: Context) -> int:
    from ..examples.quickstart import main as quickstart

    if args.db:
        os.environ["FINETUNER_DB"] = str(args.db)
    with contextlib.redirect_stdout(ctx.output.out):
        quickstart()
    return 0


# --- the parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        default=argparse.SUPPRESS,
        help="the store (default: FINETUNER_DB, then ./finetuner.duckdb)",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON, for scripts"
    )
    common.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print only the results",
    )
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an error",
    )

    parser = argparse.ArgumentParser(
        prog="finetuner",
        description="Datasets, fine-tuning and evals from your app's own OpenAI traffic.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"finetuner {__version__}")
    groups = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(parent: Any, name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = parent.add_parser(
            name, help=help, description=help, parents=[common]
        )
        sub.set_defaults(handler=handler)
        return sub

    def group(name: str, help: str) -> Any:
        sub = groups.add_parser(name, help=help, description=help, parents=[common])
        return sub.add_subparsers(dest="action", metavar="ACTION", required=True)

    ds = group("datasets", "list, show, check, split, export and import datasets")
    command(ds, "list", datasets_list, "every dataset with its examples, calls and errors")
    p = command(ds, "show", datasets_show, "the first examples of a dataset")
    p.add_argument("name")
    p.add_argument("-n", type=int, default=10, help="how many (default 10)")
    for name, handler, help in (
        ("stats", datasets_stats, "counts, token distribution and training-token estimate"),
        ("validate", datasets_validate, "OpenAI's fine-tuning data checks (exit 1 on errors)"),
    ):
        p = command(ds, name, handler, help)
        p.add_argument("name")
        p.add_argument("--model", help="the model to fine-tune (picks the encoding and context)")
        p.add_argument("--encoding", help="a tiktoken encoding name, e.g. o200k_base")
        if name == "stats":
            p.add_argument("--epochs", type=int, help="epochs of the estimate (default: OpenAI's)")
        else:
            p.add_argument("--limit", type=int, default=10, help="problems to list (default 10)")
    p = command(ds, "split", datasets_split, "write train.jsonl and val.jsonl")
    p.add_argument("name")
    p.add_argument("--train", type=float, default=0.8, help="the train fraction (default 0.8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output-dir", default=".", help="where to write them (default .)")
    p = command(ds, "export", datasets_export, "export a dataset")
    p.add_argument("name")
    p.add_argument(
        "--format",
        choices=["openai", "dpo", "parquet", "csv"],
        default="openai",
        help="openai (chat JSONL), dpo (preference pairs), parquet, csv",
    )
    p.add_argument("-o", "--output", required=True, help="the file to write")
    p = command(ds, "generate", datasets_generate, "synthetic examples in a dataset's style")
    p.add_argument("name")
    p.add_argument("-n", type=int, default=50, help="how many (default 50)")
    p.add_argument("--model", required=True, help="the model that writes new inputs")
    p.add_argument("--teacher-model", help="the model that answers them (default --model)")
    p.add_argument("--instructions", help="what else the new inputs should be like")
    p.add_argument("--into", help="the dataset to add them to (default NAME)")
    p = command(ds, "import", datasets_import, "add an OpenAI chat JSONL file to a dataset")
    p.add_argument("file")
    p.add_argument("--name", required=True, help="the dataset to add the examples to")
    p.add_argument("--model", help="record this as the examples' model")

    p = command(groups, "sql", sql, "read-only SQL over the store (or the SQL on stdin)")
    p.add_argument("query", nargs="?", help='e.g. "SELECT * FROM datasets"; - or none: stdin')
    fmt = p.add_mutually_exclusive_group()
    for flag, value in (("--table", "table"), ("--csv", "csv"), ("--nl", "nl")):
        fmt.add_argument(
            flag,
            dest="output_format",
            action="store_const",
            const=value,
            default=argparse.SUPPRESS,
            help=f"print as {value}",
        )

    calls = group("calls", "list, show and give feedback on recorded calls")
    p = command(calls, "list", calls_list, "the latest calls")
    p.add_argument("--dataset")
    p.add_argument("--status", choices=["ok", "error", "incomplete"])
    p.add_argument("-n", type=int, default=20)
    p = command(calls, "show", calls_show, "one call, whole (by id or a unique prefix)")
    p.add_argument("id")
    for verdict, help in (("accept", "mark a call good"), ("reject", "keep a call out of exports")):
        p = command(calls, verdict, calls_feedback, help)
        p.add_argument("id")
        p.add_argument("--note")
        p.set_defaults(verdict=verdict)
    p = command(calls, "correct", calls_feedback, "train on a corrected completion")
    p.add_argument("id")
    p.add_argument("--completion", required=True, help="the text, or - to read it from stdin")
    p.add_argument("--note")
    p.set_defaults(verdict="correct")

    ft = group("finetune", "start, follow and list fine-tuning jobs")
    p = command(ft, "start", finetune_start, "fine-tune a model on a dataset")
    p.add_argument("dataset")
    p.add_argument("--provider", choices=["openai", "together", "local"], default="openai")
    p.add_argument("--model", required=True, help="the base model")
    p.add_argument("--val-split", type=float, default=0.0, help="held out for validation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int)
    p.add_argument("--suffix")
    p.add_argument("--output-dir", help="local provider: where models go")
    p.add_argument("--wait", action="store_true", help="follow the job to its end")
    p.add_argument("--poll", type=float, default=10.0, help=argparse.SUPPRESS)
    for action, help in (
        ("status", "a job, fresh from its provider"),
        ("wait", "follow a job to its end (exit 1 unless it succeeds)"),
        ("cancel", "cancel a job"),
    ):
        p = command(ft, action, finetune_status, help)
        p.add_argument("job")
        p.add_argument(
            "--provider",
            choices=["openai", "together", "local"],
            help="default: the job's, from the store",
        )
        p.add_argument("--output-dir", help="local provider: where models go")
        p.add_argument("--poll", type=float, default=10.0, help=argparse.SUPPRESS)
        p.set_defaults(action=action)
    command(ft, "list", finetune_list, "the jobs in the store, with what they trained on")

    ev = group("eval", "run, show, compare and report evals")
    p = command(ev, "run", eval_run, "score a model on a dataset")
    p.add_argument("eval", help="exact, json, tool-call, judge, or path/to/file.py:ClassName")
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--temperature", type=float)
    p.add_argument("--judge-model", help="judge: the model that grades")
    p.add_argument("--rubric", help="judge: what a good answer is")
    p = command(ev, "show", eval_show, "a stored run")
    p.add_argument("run")
    p = command(ev, "compare", eval_compare, "two runs, paired, with a p-value")
    p.add_argument("baseline")
    p.add_argument("candidate")
    p = command(ev, "report", eval_report, "an HTML report of runs (the first against the rest)")
    p.add_argument("runs", nargs="+")
    p.add_argument("-o", "--output", required=True)

    command(groups, "ingest", ingest, "move spooled calls into the store now")
    command(groups, "doctor", doctor, "versions, the store, the spool, the OTel entry points")
    command(groups, "demo", demo, "the README's demo, on the local OpenAI-compatible server")
    p = command(
        groups, "serve", serve, "receive OTLP/HTTP traces (e.g. from a Collector) into the store"
    )
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1; 0.0.0.0 for all")
    p.add_argument("--port", type=int, default=4318, help="default 4318, OTLP/HTTP's")
    p.add_argument("--token", help="require this bearer token (or FINETUNER_SERVE_TOKEN)")
    p.add_argument("--max-body-mb", type=int, default=16, help="largest request (default 16)")
    p = command(groups, "ui", ui, "browse, review and compare in a local web app")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (others need a token)")
    p.add_argument("--port", type=int, default=8765, help="default 8765; 0 picks a free one")
    p.add_argument("--read-only", action="store_true", help="no accept, reject or correct")
    p.add_argument(
        "--token",
        help="require this token (or FINETUNER_UI_TOKEN); made up off the loopback if not given",
    )
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    """Run one command; returns its exit code."""
    out, err, stdin = out or sys.stdout, err or sys.stderr, stdin or sys.stdin
    parser = build_parser()
    try:  # usage errors, --help and --version print where the caller said
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    for name, default in (
        ("db", os.environ.get("FINETUNER_DB")),
        ("json", False),
        ("quiet", False),
        ("debug", False),
        ("output_format", None),
    ):
        if not hasattr(args, name):
            setattr(args, name, default)
    try:
        ctx = Context(args, out, err, stdin)
        code: int = args.handler(args, ctx)
        return code
    except (FinetunerError, ValueError, OSError, KeyboardInterrupt) as exc:
        if args.debug:
            traceback.print_exc(file=err)
        if isinstance(exc, KeyboardInterrupt):
            err.write("interrupted\n")
            return 130
        err.write(f"error: {_one_line(exc)}\n")
        return 1
    except Exception as exc:
        import openai

        if not isinstance(exc, openai.OpenAIError):
            raise
        if args.debug:
            traceback.print_exc(file=err)
        err.write(f"error: {_one_line(exc)}\n")
        return 1


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    first, *rest = text.splitlines()
    return first if not rest else f"{first} (--debug or --json for more)"


def console() -> None:
    """The ``finetuner`` console script."""
    sys.exit(main())
