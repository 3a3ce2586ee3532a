"""The ``finetuner`` command line, against real stores and the local server."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from finetuner_otel.cli import main
from finetuner_otel.testing import OpenAIServer, RecordedRequest, Reply

from .conftest import rows

LABELS = {
    "pizza dough": "food",
    "flights to rome": "travel",
    "gpu drivers": "tech",
    "pasta recipe": "food",
    "hotel in paris": "travel",
    "laptop battery": "tech",
}


def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err, stdin=io.StringIO(stdin))
    return code, out.getvalue(), err.getvalue()


def _label(request: RecordedRequest) -> Reply:
    return Reply(LABELS.get(request.json["messages"][-1]["content"], "tech"))


@pytest.fixture
def store(capture, server: OpenAIServer) -> Path:
    """A store with dataset "queries" (6 calls) and one failed call in dataset "other"."""
    server.responder = _label
    client = server.client()
    for query in LABELS:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "system", "content": "Label it."},
                {"role": "user", "content": query},
            ],
            dataset_name="queries",
        )
    from finetuner_otel.testing import ErrorReply

    server.enqueue(ErrorReply(500, "boom"))
    with pytest.raises(Exception, match="boom"):
        client.with_options(max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], dataset_name="other"
        )
    assert capture.flush()
    return capture.db_path


def test_datasets_commands(store: Path, tmp_path: Path) -> None:
    code, out, _ = run("--db", str(store), "--json", "datasets", "list")
    assert code == 0
    listed = {d["name"]: d for d in json.loads(out)}
    assert (listed["queries"]["examples"], listed["other"]["errors"]) == (6, 1)
    code, out, _ = run("datasets", "list", "--db", str(store))  # options after the command too
    assert code == 0 and "queries" in out and "examples" in out.splitlines()[0]

    code, out, _ = run("--db", str(store), "datasets", "show", "queries", "-n", "2")
    assert code == 0 and "2 of 6 examples" in out and "pizza dough" in out

    code, out, _ = run(
        "--db", str(store), "--json", "datasets", "validate", "queries", "--model", "my-model"
    )
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["examples"] == 6
    assert report["warnings"] == {}
    code, out, _ = run(
        "--db", str(store), "--json", "datasets", "stats", "queries", "--epochs", "2"
    )
    assert code == 0 and json.loads(out)["examples"] == 6

    code, out, _ = run(
        "--db",
        str(store),
        "--json",
        "datasets",
        "split",
        "queries",
        "--train",
        "0.5",
        "--seed",
        "3",
        "-o",
        str(tmp_path / "split"),
    )
    parts = json.loads(out)
    assert code == 0 and sum(p["examples"] for p in parts) == 6
    assert (tmp_path / "split" / "train.jsonl").exists()

    for fmt, name in (("openai", "q.jsonl"), ("parquet", "q.parquet"), ("csv", "q.csv")):
        code, out, _ = run(
            "--db",
            str(store),
            "--json",
            "datasets",
            "export",
            "queries",
            "--format",
            fmt,
            "-o",
            str(tmp_path / name),
        )
        assert code == 0 and json.loads(out)["examples"] == 6, out
    code, out, _ = run(
        "--db",
        str(store),
        "--json",
        "datasets",
        "import",
        str(tmp_path / "q.jsonl"),
        "--name",
        "copy",
    )
    assert code == 0 and json.loads(out)["added"] == 6
    code, out, _ = run(
        "--db", str(store), "datasets", "import", str(tmp_path / "q.jsonl"), "--name", "copy"
    )
    assert code == 0 and "nothing added" in out


def test_sql_formats_stdin_and_refusals(store: Path) -> None:
    query = "SELECT dataset, count(*) AS n FROM calls GROUP BY 1 ORDER BY 1"
    assert json.loads(run("--db", str(store), "--json", "sql", query)[1]) == [
        {"dataset": "other", "n": 1},
        {"dataset": "queries", "n": 6},
    ]
    assert run("--db", str(store), "sql", query, "--csv")[1] == "dataset,n\nother,1\nqueries,6\n"
    lines = run("--db", str(store), "sql", query, "--nl")[1].splitlines()
    assert [json.loads(line)["n"] for line in lines] == [1, 6]
    assert "queries" in run("--db", str(store), "sql", "--table", stdin=query)[1]
    code, _, err = run("--db", str(store), "sql", "DELETE FROM recorded_calls")
    assert code == 1 and "read-only, and this is a DELETE statement" in err
    code, _, err = run("--db", str(store), "sql", "SELEC nonsense")
    assert code == 1 and err.startswith("error: SQL error") and "Traceback" not in err


def test_calls_commands(store: Path, capture) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run("--db", str(store), "--json", "calls", "list", "--status", "error")
    [failed] = json.loads(out)
    assert code == 0 and failed["dataset"] == "other"
    ids = [r["id"] for r in rows(capture, "dataset = 'queries'")]
    code, out, _ = run("--db", str(store), "--json", "calls", "show", ids[0][:20])
    shown = json.loads(out)
    assert code == 0 and shown["completion"]["content"] in LABELS.values()
    assert run("--db", str(store), "calls", "reject", ids[0], "--note", "dup")[0] == 0
    assert (
        run("--db", str(store), "calls", "correct", ids[1], "--completion", "-", stdin="travel\n")[
            0
        ]
        == 0
    )
    assert run("--db", str(store), "calls", "accept", ids[2])[0] == 0
    verdicts = json.loads(
        run(
            "--db",
            str(store),
            "--json",
            "sql",
            "SELECT call_id, verdict, correction FROM call_feedback",
        )[1]
    )
    by_id = {v["call_id"]: v for v in verdicts}
    assert by_id[ids[0]]["verdict"] == "reject" and by_id[ids[2]]["verdict"] == "accept"
    assert json.loads(by_id[ids[1]]["correction"])["content"] == "travel"
    code, _, err = run("--db", str(store), "calls", "accept", "no-such-call")
    assert code == 1 and "no call with id 'no-such-call'" in err


def test_errors_are_one_line_with_exit_codes(tmp_path: Path) -> None:
    missing = str(tmp_path / "none.duckdb")
    code, _, err = run("--db", missing, "datasets", "list")
    assert code == 1 and err.count("\n") == 1 and "no store at" in err
    code, _, err = run("--db", missing, "datasets", "nope")
    assert (code == 2 and "invalid choice" in err) or "usage" in err
    assert run("datasets")[0] == 2
    code, _, _ = run("--version")
    assert code == 0
    code, _, err = run("--db", missing, "--debug", "datasets", "list")
    assert code == 1 and "Traceback" in err


def test_doctor_and_ingest(store: Path) -> None:
    code, out, _ = run("--db", str(store), "--json", "doctor")
    report = json.loads(out)
    assert code == 0 and report["store_exists"] and "migrations applied" in report["schema"]
    assert report["entry_points"]["opentelemetry_instrumentor"] == ["finetuner_openai"]
    # No other distro in this environment: the launcher uses ours, into the store.
    assert report["launcher"]["distro"] == "finetuner" and report["launcher"]["store"] is True
    code, out, _ = run("--db", str(store), "--json", "ingest")
    assert code == 0 and json.loads(out)["pending_files"] == 0


def test_end_to_end_through_the_cli_only(tmp_path: Path) -> None:
    """capture (the demo) -> datasets -> split -> export -> finetune -> eval -> report, each a
    `finetuner` process, against the local server standing in for the provider."""
    with OpenAIServer(_label) as server:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("FINETUNER_", "OTEL_"))},
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_BASE_URL": server.url,
            "FINETUNER_DB": str(tmp_path / "e2e.duckdb"),
        }
        finetuner = [sys.executable, "-m", "finetuner_otel.cli"]

        def cli(*argv: str) -> str:
            done = subprocess.run(
                [*finetuner, *argv],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        cli("demo")  # captures search_classifier through the SDK, instrumented
        [dataset] = json.loads(cli("--json", "datasets", "list"))
        assert dataset["name"] == "search_classifier" and dataset["examples"] == 10
        cli("datasets", "split", "search_classifier", "--train", "0.8", "-o", "split")
        cli("datasets", "export", "search_classifier", "-o", "all.jsonl")
        job = json.loads(
            cli(
                "--json",
                "finetune",
                "start",
                "search_classifier",
                "--model",
                "gpt-4o-mini-2024-07-18",
                "--val-split",
                "0.2",
                "--epochs",
                "2",
                "--wait",
                "--poll",
                "0",
            )
        )
        assert job["status"] == "succeeded" and job["fine_tuned_model"].startswith("ft:")
        assert json.loads(cli("--json", "finetune", "status", job["id"]))["status"] == "succeeded"
        [listed] = json.loads(cli("--json", "finetune", "list"))
        assert listed["dataset"] == "search_classifier[train]"
        base = json.loads(
            cli(
                "--json",
                "eval",
                "run",
                "exact",
                "--model",
                "gpt-4o-mini",
                "--dataset",
                "search_classifier",
                "--temperature",
                "0",
            )
        )
        tuned = json.loads(
            cli(
                "--json",
                "eval",
                "run",
                "exact",
                "--model",
                job["fine_tuned_model"],
                "--dataset",
                "search_classifier",
            )
        )
        assert base["accuracy"] == tuned["accuracy"] == 1.0
        compared = json.loads(cli("--json", "eval", "compare", base["run"], tuned["run"]))
        assert compared["pairs"] == 10 and compared["p_value"] == 1.0
        shown = cli("eval", "show", tuned["run"])
        assert "accuracy" in shown
        report = json.loads(
            cli("--json", "eval", "report", tuned["run"], base["run"], "-o", "report.html")
        )
        assert Path(report["report"]).read_text().startswith("<!doctype html>")
    # the console script the package installs
    script = Path(sys.executable).parent / "finetuner"
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("finetuner ")


def test_eval_run_takes_an_eval_from_a_file(
    store: Path, server: OpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    spec = tmp_path / "evals.py"
    spec.write_text(
        "from finetuner_otel.eval import Eval\n\n"
        "class Lenient(Eval):\n"
        "    def compare(self, prediction, target):\n"
        "        return prediction.strip().lower() == target.strip().lower()\n"
    )
    code, out, err = run(
        "--db",
        str(store),
        "--json",
        "-q",
        "eval",
        "run",
        f"{spec}:Lenient",
        "--model",
        "gpt-4o-mini",
        "--dataset",
        "queries",
    )
    assert code == 0, err
    result = json.loads(out)
    assert (result["eval"], result["scored"], result["accuracy"]) == ("Lenient", 6, 1.0)
    code, _, err = run(
        "--db", str(store), "eval", "run", f"{spec}:Missing", "--model", "m", "--dataset", "queries"
    )
    assert code == 1 and "no Eval subclass named 'Missing'" in err
    code, _, err = run(
        "--db", str(store), "eval", "run", "judge", "--model", "m", "--dataset", "queries"
    )
    assert code == 1 and "needs --judge-model" in err


# --- hostile content and hosts -------------------------------------------------------------------

# What a terminal acts on: a title change and screen clear (ESC), a C1 CSI, a bidi override.
HOSTILE = "\x1b]0;pwned\x07\x1b[2J done \x9b31m \u202eevil"


def test_terminal_controls_in_stored_content_are_escaped(
    capture, server: OpenAIServer, db: Path
) -> None:  # type: ignore[no-untyped-def]
    server.responder = lambda request: Reply(HOSTILE)
    server.client().chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "say \x1b[31mred"}],
        dataset_name="queries",
    )
    [call] = rows(capture)
    import duckdb  # a store written before dataset names were checked, as OTLP ones weren't

    with duckdb.connect(str(db), config={"autoinstall_known_extensions": False}) as con:
        con.execute("UPDATE recorded_calls SET dataset = ?", ["q\x1b[8m\u202e"])

    def controls(text: str) -> list[str]:
        return [
            c
            for c in text
            if (ord(c) < 32 and c != "\n") or 0x7F <= ord(c) <= 0x9F or c == "\u202e"
        ]

    for argv in (
        ("datasets", "list"),
        ("calls", "list"),
        ("calls", "show", call["id"]),
        ("sql", "--table", "SELECT dataset, completion FROM calls"),
    ):
        code, out, err = run("--db", str(db), *argv)
        assert code == 0, err
        assert controls(out) == [], (argv, out)
    _, shown, _ = run("--db", str(db), "calls", "show", call["id"])
    # (the completion is JSON here, so C0 controls are JSON's escapes and the rest are Python's)
    assert "\\u001b]0;pwned\\u0007\\u001b[2J done \\x9b31m \\u202eevil" in shown
    assert "q\\x1b[8m\\u202e" in run("--db", str(db), "datasets", "list")[1]
    # JSON stays exact JSON: the same text back
    code, out, _ = run("--db", str(db), "--json", "calls", "show", call["id"])
    record = json.loads(out)
    assert record["completion"]["content"] == HOSTILE and record["dataset"] == "q\x1b[8m\u202e"
    # and an error naming stored text is one escaped line
    code, _, err = run("--db", str(db), "datasets", "show", "q\x1b[8m")
    assert code == 1 and "\x1b" not in err and err.count("\n") == 1


def test_serve_off_the_loopback_needs_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINETUNER_")}
    argv = [sys.executable, "-m", "finetuner_otel.cli", "--db", str(tmp_path / "s.duckdb")]
    done = subprocess.run(
        [*argv, "serve", "--host", "0.0.0.0", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,  # before: it listened on every address, with no token, until killed
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert "--token" in done.stderr and "FINETUNER_SERVE_TOKEN" in done.stderr


def test_help_lists_every_group_and_command() -> None:
    def commands(*argv: str) -> list[str]:
        code, out, _ = run(*argv, "--help")
        assert code == 0
        listed = out.split("positional arguments:")[1].split("options:")[0].splitlines()
        return [line.split()[0] for line in listed[2:] if line.startswith("    ") and line.strip()]

    assert commands() == [
        "datasets",
        "sql",
        "calls",
        "finetune",
        "eval",
        "shadow",
        "import",
        "ingest",
        "compact",
        "doctor",
        "demo",
        "serve",
        "ui",
    ]
    assert commands("datasets") == [
        "list",
        "show",
        "stats",
        "validate",
        "split",
        "export",
        "generate",
        "import",
        "leakage",
    ]
    assert commands("calls") == ["list", "show", "accept", "reject", "correct"]
    assert commands("finetune") == ["start", "status", "wait", "cancel", "list", "serve"]
    assert commands("eval") == ["run", "show", "compare", "report"]
    assert commands("shadow") == ["status", "review"]
    code, out, _ = run("calls", "accept", "--help")
    assert code == 0 and "mark a call good" in out and "--note" in out
