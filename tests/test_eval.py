"""Evals against the local server: accuracy and its interval, caching, retries, errors, the
built-in evals, the judge, paired comparison, storage, and the HTML report in Chromium."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

import finetuner_otel
from finetuner_otel import Dataset, Example
from finetuner_otel.eval import (
    Eval,
    JSONMatch,
    JudgeEval,
    Score,
    ToolCallMatch,
    load_run,
)
from finetuner_otel.eval._stats import mcnemar_exact, sign_flip_test, wilson
from finetuner_otel.testing import ErrorReply, OpenAIServer, RecordedRequest, Reply, ToolCall

LABELS = ["food", "travel", "tech", "food", "travel", "tech", "food", "travel", "tech", "food"]


def _examples(labels: list[str] = LABELS) -> Dataset:
    return Dataset(
        "val",
        [
            Example(
                id=f"call-{i}",
                dataset="val",
                messages=[
                    {"role": "system", "content": "Label the query."},
                    {"role": "user", "content": f"query {i}"},
                ],
                completion={"role": "assistant", "content": label},
                model="gpt-4o-mini",
            )
            for i, label in enumerate(labels)
        ],
    )


def _answers(per_model: dict[str, Callable[[int], object]]):  # type: ignore[no-untyped-def]
    """A responder: the answer of each model to "query N" (a label, or an ErrorReply)."""

    def respond(request: RecordedRequest):  # type: ignore[no-untyped-def]
        body = request.json
        question = body["messages"][-1]["content"]
        number = int(question.split()[-1])
        answer = per_model[body["model"]](number)
        return answer if isinstance(answer, ErrorReply | Reply) else Reply(str(answer))

    return respond


class Classification(Eval):
    def compare(self, prediction: str, target: str) -> bool:
        return prediction.strip() == target.strip()


def _eval(server: OpenAIServer, store: Path, cls: type[Eval] = Classification, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("progress", False)
    return cls(server.client(), store=store, backoff=0, **kw)


def test_accuracy_and_its_wilson_interval(server: OpenAIServer, tmp_path: Path) -> None:
    # right on 7 of 10: wrong on queries 0, 3 and 6
    server.responder = _answers({"base": lambda i: "wrong" if i in (0, 3, 6) else LABELS[i]})
    out = io.StringIO()
    result = _eval(server, tmp_path / "s.duckdb", progress=out).run(
        "base", _examples(), temperature=0
    )
    assert (result.accuracy, result.n, result.failures, result.errors) == (0.7, 10, 3, 0)
    low, high = result.ci95
    assert (round(low, 4), round(high, 4)) == (0.3968, 0.8922)  # Wilson, z = 1.96
    assert float(result) == 0.7  # the original API returned the accuracy
    assert result.calls == 10
    assert {r.json["temperature"] for r in server.requests} == {0}
    assert "10/10" in out.getvalue()
    assert "accuracy 70.0%" in result.summary()


def test_a_second_run_calls_only_what_changed(server: OpenAIServer, tmp_path: Path) -> None:
    server.responder = _answers({"base": lambda i: [*LABELS, "tech"][i]})
    store = tmp_path / "s.duckdb"
    first = _eval(server, store).run("base", _examples(), temperature=0)
    assert first.calls == 10 and first.cached == 0
    again = _eval(server, store).run("base", _examples(), temperature=0)
    assert again.calls == 0 and again.cached == 10 and again.accuracy == 1.0
    assert len(server.requests) == 10
    grown = _examples([*LABELS, "tech"])
    more = _eval(server, store).run("base", grown, temperature=0)
    assert (more.calls, more.cached) == (1, 10)
    other = _eval(server, store).run("base", _examples(), temperature=0.7)
    assert other.calls == 10  # other parameters, other answers
    uncached = _eval(server, store, cache=False).run("base", _examples(), temperature=0)
    assert uncached.calls == 10


def test_rate_limits_and_server_errors_are_retried_and_errors_counted_apart(
    server: OpenAIServer, tmp_path: Path
) -> None:
    attempts: dict[int, int] = {}

    def flaky(i: int) -> object:
        attempts[i] = attempts.get(i, 0) + 1
        if i == 1 and attempts[i] <= 2:
            return ErrorReply(429, "Rate limit reached", headers={"retry-after": "0"})
        if i == 2 and attempts[i] == 1:
            return ErrorReply(503, "overloaded")
        if i == 3:
            return ErrorReply(400, "This model's maximum context length is exceeded")
        if i == 4:
            return ErrorReply(500, "always down")
        return LABELS[i]

    server.responder = _answers({"base": flaky})
    result = _eval(server, tmp_path / "s.duckdb", retries=3).run("base", _examples())
    by_id = {r.example_id: r for r in result.results}
    assert by_id["call-1"].score == 1.0 and by_id["call-2"].score == 1.0  # retried, then fine
    assert by_id["call-3"].status == "error" and "maximum context length" in by_id["call-3"].error
    assert attempts[3] == 1  # a 400 is not retried
    assert by_id["call-4"].status == "error" and attempts[4] == 4  # 1 + 3 retries
    assert (result.errors, result.n, result.accuracy) == (2, 8, 1.0)
    assert result.retries == 2 + 1 + 3
    assert result.calls == 10 + result.retries


def test_eval_calls_never_become_training_examples(capture, server: OpenAIServer) -> None:
    client = server.client()
    for i, label in enumerate(LABELS[:4]):
        server.enqueue(Reply(label))
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"query {i}"}],
            dataset_name="search",
        )
    store = capture.open_store()
    dataset = store.get_dataset("search")
    server.responder = _answers({"base": lambda i: LABELS[i]})
    result = Classification(client, progress=False).run("base", dataset)
    assert result.accuracy == 1.0
    assert capture.flush()
    summary = {d.name: d for d in store.list_datasets()}
    assert summary["search"].examples == 4 and summary["search"].calls == 4
    assert (summary["eval"].calls, summary["eval"].examples) == (4, 0)
    reasons = store.sql("SELECT DISTINCT untrainable_reason FROM calls WHERE dataset = 'eval'")
    assert reasons.rows == [("an evaluation call",)]
    purposes = store.sql(
        "SELECT DISTINCT attributes->>'finetuner.purpose' FROM calls WHERE dataset = 'eval'"
    )
    assert purposes.rows == [("eval",)]
    # stored with the dataset's store, and plain SQL
    [[accuracy, scored]] = store.sql("SELECT accuracy, scored FROM eval_runs").rows
    assert (accuracy, scored) == (1.0, 4)


def test_paired_comparison_with_its_p_value(server: OpenAIServer, tmp_path: Path) -> None:
    # base right on 4 (queries 0-3), tuned on 9 (all but 9): 5 discordant pairs, all for tuned
    server.responder = _answers(
        {
            "base": lambda i: LABELS[i] if i < 4 else "?",
            "tuned": lambda i: LABELS[i] if i < 9 else "?",
        }
    )
    store = tmp_path / "s.duckdb"
    base = _eval(server, store).run("base", _examples(), temperature=0)
    tuned = _eval(server, store).run("tuned", _examples(), temperature=0)
    comparison = tuned.compare_to(base)
    assert (comparison.n, comparison.wins, comparison.losses, comparison.ties) == (10, 5, 0, 5)
    assert comparison.difference == pytest.approx(0.5)
    assert comparison.test == "exact McNemar"
    assert comparison.p_value == pytest.approx(2 / 2**5)  # 2 * P(X <= 0), X ~ Bin(5, 1/2)
    assert len(comparison.disagreements) == 5
    assert "significant at 0.05" in comparison.summary()


def test_the_statistics() -> None:
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(50, 100)
    assert round(low, 4) == 0.4038 and round(high, 4) == 0.5962
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)
    assert sign_flip_test([0.5, 0.5, 0.5]) == pytest.approx(2 / 8)
    assert sign_flip_test([0.0, 0.0]) == 1.0
    assert 0 < sign_flip_test([0.1] * 30) < 0.001  # the sampled test, past 16 pairs


def test_builtin_json_and_tool_call_evals(server: OpenAIServer, tmp_path: Path) -> None:
    targets = ['{"a": 1, "b": [1, 2]}', '{"x": "y"}', '{"k": 1}']
    answers = ['```json\n{"b": [1, 2], "a": 1}\n```', "not json at all", '{"k": 2}']
    data = Dataset(
        "json",
        [
            Example(
                f"j{i}",
                "json",
                [{"role": "user", "content": f"query {i}"}],
                {"role": "assistant", "content": t},
            )
            for i, t in enumerate(targets)
        ],
    )
    server.responder = _answers({"m": lambda i: answers[i]})
    result = _eval(server, tmp_path / "s.duckdb", JSONMatch).run("m", data)
    assert [r.score for r in result.results] == [1.0, 0.0, 0.0]
    assert "not JSON" in result.results[1].reason

    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"q": 1, "r": 2}'},
    }
    data = Dataset(
        "tools",
        [
            Example(
                f"t{i}",
                "tools",
                [{"role": "user", "content": f"query {i}"}],
                {"role": "assistant", "tool_calls": [call]},
                tools=tools,
            )
            for i in range(3)
        ],
    )
    replies = [
        Reply(None, tool_calls=[ToolCall("lookup", '{"r": 2, "q": 1}')]),
        Reply(None, tool_calls=[ToolCall("search", '{"q": 1, "r": 2}')]),
        Reply(None, tool_calls=[ToolCall("lookup", '{"q": 9}')]),
    ]
    server.responder = _answers({"m": lambda i: replies[i]})
    result = _eval(server, tmp_path / "s.duckdb", ToolCallMatch).run("m", data)
    assert [r.score for r in result.results] == [1.0, 0.0, 0.0]
    assert result.results[1].reason == "called ['search'], expected ['lookup']"
    assert result.results[2].reason == "same tools, different arguments"
    assert all(r.json.get("tools") == tools for r in server.requests[-3:])  # tools offered


def test_an_llm_judge_with_a_rubric(server: OpenAIServer, tmp_path: Path) -> None:
    def judge(request: RecordedRequest) -> Reply:
        body = request.json
        if body["model"] == "judge":
            assert body["response_format"] == {"type": "json_object"}
            assert "Rubric:\nSame meaning" in body["messages"][0]["content"]
            graded = body["messages"][1]["content"].split("Answer to grade:\n")[1]
            score = 1 if graded in ("food", "FOOD!") else 0.25
            return Reply(json.dumps({"score": score, "reason": f"graded {graded}"}))
        number = int(body["messages"][-1]["content"].split()[-1])
        return Reply(["food", "FOOD!", "drinks"][number])

    server.responder = judge
    data = _examples(["food", "food", "food"])
    result = _eval(
        server, tmp_path / "s.duckdb", JudgeEval, rubric="Same meaning", judge_model="judge"
    ).run("m", data)
    assert [r.score for r in result.results] == [1.0, 1.0, 0.25]
    assert result.results[2].reason == "graded drinks"
    assert result.accuracy == pytest.approx(0.75)
    assert result.calls == 6  # three answers, three gradings
    again = _eval(
        server, tmp_path / "s.duckdb", JudgeEval, rubric="Same meaning", judge_model="judge"
    ).run("m", data)
    assert again.calls == 0  # the gradings are cached too


def test_bad_evals_and_arguments_are_named(server: OpenAIServer, tmp_path: Path) -> None:
    class Broken(Eval):
        def compare(self, prediction: str, target: str) -> object:
            return 7

    server.responder = _answers({"m": lambda i: LABELS[i]})
    result = _eval(server, tmp_path / "s.duckdb", Broken).run("m", _examples(LABELS[:2]))
    assert result.errors == 2 and "outside [0, 1]" in result.results[0].error
    with pytest.raises(finetuner_otel.ConfigurationError, match="no examples"):
        _eval(server, tmp_path / "s.duckdb").run("m", Dataset("empty", []))
    with pytest.raises(finetuner_otel.ConfigurationError, match="not messages"):
        _eval(server, tmp_path / "s.duckdb").run("m", _examples(), messages=[])
    with pytest.raises(finetuner_otel.ConfigurationError, match="concurrency"):
        _eval(server, tmp_path / "s.duckdb", concurrency=0)
    with pytest.raises(NotImplementedError, match="must define compare"):
        Eval(server.client()).compare("a", "b")
    assert Score(0.5).passed and not Score(0.49).passed


def test_runs_are_stored_and_load_back(server: OpenAIServer, tmp_path: Path) -> None:
    server.responder = _answers({"m": lambda i: LABELS[i] if i % 2 else "?"})
    store = finetuner_otel.Store(tmp_path / "s.duckdb")
    result = _eval(server, store.path).run("m", _examples(), temperature=0)
    rows = store.sql(
        "SELECT position, call_id, score, status FROM eval_results WHERE run_id = ? "
        "ORDER BY position",
        [result.run_id],
    ).rows
    assert rows[:2] == [(0, "call-0", 0.0, "ok"), (1, "call-1", 1.0, "ok")]
    loaded = load_run(store, result.run_id[:12])
    assert (loaded.accuracy, loaded.n, loaded.params) == (0.5, 10, {"temperature": 0})
    assert [r.prediction for r in loaded.results] == [r.prediction for r in result.results]
    with pytest.raises(finetuner_otel.ConfigurationError, match="names no run"):
        load_run(store, "run-nope")


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    _chromium() is None, reason="Debian's chromium is not installed (.ci/run installs it)"
)
def test_the_html_report_renders_in_chromium_without_console_errors(
    server: OpenAIServer, tmp_path: Path
) -> None:
    server.responder = _answers(
        {
            "base": lambda i: LABELS[i] if i < 5 else "<b>wrong</b> & odd",
            "tuned": lambda i: LABELS[i] if i != 7 else ErrorReply(400, "bad request"),
        }
    )
    store = tmp_path / "s.duckdb"
    base = _eval(server, store).run("base", _examples())
    tuned = _eval(server, store).run("tuned", _examples())
    path = tuned.report(tmp_path / "report" / "report.html", base)
    page = path.read_text()
    assert "&lt;b&gt;wrong&lt;/b&gt; &amp; odd" in page  # escaped, never markup
    assert "<svg" in page and "Paired comparison" in page and "disagreements" in page
    assert "http://" not in page and "https://" not in page  # self-contained
    chromium = _chromium()
    assert chromium is not None
    run = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert 'data-ready="true"' in run.stdout  # its script ran to the end
    console = [line for line in run.stderr.splitlines() if re.search(r":CONSOLE[:(]", line)]
    assert console == []
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=1280,1600",
            path.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 10_000
