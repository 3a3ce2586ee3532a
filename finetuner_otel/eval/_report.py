"""A self-contained HTML report of eval runs: accuracy with its interval per model as a chart,
the paired comparison and the disagreements, and every example with its diff.

It renders what ``Run`` and ``Paired`` describe (``EvalResult`` and ``Comparison`` are both), so
that the runs can write their report without the report importing them back.
"""

from __future__ import annotations

import html
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, TypeVar

from .._html import accuracy_chart, text_of, word_diff
from .._json import dumps
from .._messages import last_user_message
from ._results import ExampleResult

_R = TypeVar("_R", bound="Run")


class Paired(Protocol):
    """What the report shows of two runs compared (a ``Comparison``)."""

    @property
    def disagreements(self) -> Sequence[tuple[ExampleResult, ExampleResult]]: ...

    def summary(self) -> str: ...


class Run(Protocol):
    """What the report shows of a run (an ``EvalResult``)."""

    @property
    def run_id(self) -> str: ...
    @property
    def eval_name(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def dataset(self) -> str: ...
    @property
    def results(self) -> Sequence[ExampleResult]: ...
    @property
    def accuracy(self) -> float: ...
    @property
    def ci95(self) -> tuple[float, float]: ...
    @property
    def n(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def errors(self) -> int: ...
    @property
    def calls(self) -> int: ...
    @property
    def cached(self) -> int: ...

    def compare_to(self: _R, baseline: _R) -> Paired: ...


_CSS = """
:root { --ok: #1a7f37; --bad: #cf222e; --err: #9a6700; --ink: #1f2328; --muted: #656d76;
        --line: #d0d7de; --bar: #0969da; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
       margin: 0 auto; max-width: 1200px; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.muted { color: var(--muted); }
table { border-collapse: collapse; width: 100%; margin: 8px 0; }
th, td { border-bottom: 1px solid var(--line); padding: 6px 8px; text-align: left;
         vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
pre { margin: 0; white-space: pre-wrap; word-break: break-word; font: 12.5px/1.4 ui-monospace,
      SFMono-Regular, Menlo, monospace; }
ins { background: #dafbe1; text-decoration: none; } del { background: #ffebe9; }
.pass { color: var(--ok); font-weight: 600; } .fail { color: var(--bad); font-weight: 600; }
.error { color: var(--err); font-weight: 600; }
.leaked { color: var(--err); font-size: 12px; }
.filters button { border: 1px solid var(--line); background: #fff; border-radius: 6px;
                  padding: 3px 10px; margin-right: 4px; cursor: pointer; }
.filters button[aria-pressed="true"] { background: var(--ink); color: #fff; }
.verdict { padding: 10px 12px; border: 1px solid var(--line); border-radius: 6px;
           background: #f6f8fa; }
svg text { font: 12px system-ui, sans-serif; fill: var(--ink); }
"""

_SCRIPT = """
document.querySelectorAll('.filters').forEach(function (group) {
  var table = document.getElementById(group.dataset.table);
  group.querySelectorAll('button').forEach(function (button) {
    button.addEventListener('click', function () {
      group.querySelectorAll('button').forEach(function (b) {
        b.setAttribute('aria-pressed', String(b === button));
      });
      var want = button.dataset.show;
      table.querySelectorAll('tbody tr').forEach(function (row) {
        row.hidden = want !== 'all' && row.dataset.outcome !== want;
      });
    });
  });
});
document.body.dataset.ready = 'true';
"""


def _e(value: Any) -> str:
    return html.escape(value if isinstance(value, str) else dumps(value), quote=True)


def _question(result: ExampleResult) -> str:
    question = last_user_message(result.messages)
    return text_of(question.get("content") if question is not None else "")


def _outcome(result: ExampleResult) -> str:
    if result.status == "error":
        return "error"
    return "pass" if result.passed else "fail"


def _answer_cell(result: ExampleResult) -> str:
    outcome = _outcome(result)
    if outcome == "error":
        return f'<span class="error">error</span><pre>{_e(result.error or "")}</pre>'
    diff = word_diff(result.target, result.prediction)
    return f'<span class="{outcome}">{outcome}</span><pre>{diff}</pre>'


def _chart(runs: Sequence[Run]) -> str:
    return accuracy_chart(
        [(f"{run.model} ({run.eval_name})", run.accuracy, *run.ci95) for run in runs]
    )


def _summary_table(runs: Sequence[Run]) -> str:
    rows = []
    for run in runs:
        low, high = run.ci95
        rows.append(
            "<tr>"
            f"<td><code>{_e(run.run_id)}</code></td><td>{_e(run.eval_name)}</td>"
            f"<td>{_e(run.model)}</td><td>{_e(run.dataset)}</td>"
            f'<td class="num">{run.accuracy:.1%}</td>'
            f'<td class="num">{low:.1%} to {high:.1%}</td>'
            f'<td class="num">{run.n}</td><td class="num">{run.failures}</td>'
            f'<td class="num">{run.errors}</td><td class="num">{run.calls}</td>'
            f'<td class="num">{run.cached}</td>'
            "</tr>"
        )
    return (
        "<table><thead><tr><th>run</th><th>eval</th><th>model</th><th>dataset</th>"
        "<th>accuracy</th><th>95% interval</th><th>scored</th><th>failed</th><th>errors</th>"
        "<th>calls</th><th>cached</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _comparisons(runs: Sequence[Run]) -> str:
    if len(runs) < 2:
        return ""
    candidate = runs[0]
    out = ["<h2>Paired comparison</h2>"]
    for baseline in runs[1:]:
        try:
            comparison = candidate.compare_to(baseline)
        except ValueError as exc:
            out.append(f'<p class="verdict">{_e(str(exc))}</p>')
            continue
        out.append(f'<p class="verdict">{_e(comparison.summary())}</p>')
        rows = []
        for a, b in comparison.disagreements:
            rows.append(
                "<tr>"
                f'<td class="num">{a.position + 1}</td><td><pre>{_e(_question(a))}</pre></td>'
                f"<td><pre>{_e(a.target)}</pre></td>"
                f"<td>{_answer_cell(a)}</td><td>{_answer_cell(b)}</td>"
                "</tr>"
            )
        out.append(
            f"<p>{len(rows)} disagreements: examples one model passed and the other did not.</p>"
        )
        if rows:
            out.append(
                f"<table><thead><tr><th>#</th><th>input</th><th>target</th>"
                f"<th>{_e(baseline.model)}</th><th>{_e(candidate.model)}</th></tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table>"
            )
    return "".join(out)


def _examples(index: int, run: Run) -> str:
    table_id = f"examples-{index}"
    counts = {k: sum(_outcome(r) == k for r in run.results) for k in ("pass", "fail", "error")}
    buttons = "".join(
        f'<button type="button" data-show="{key}" aria-pressed="{str(key == "all").lower()}">'
        f"{label}</button>"
        for key, label in (
            ("all", f"all {len(run.results)}"),
            ("fail", f"failed {counts['fail']}"),
            ("error", f"errors {counts['error']}"),
            ("pass", f"passed {counts['pass']}"),
        )
    )
    rows = []
    for r in run.results:
        outcome = _outcome(r)
        answer = _answer_cell(r)
        score = "" if r.score is None else f"{r.score:.2f}"
        rows.append(
            f'<tr data-outcome="{outcome}">'
            f'<td class="num">{r.position + 1}{_leak_mark(run, r)}</td>'  # issue 22
            f"<td><pre>{_e(_question(r))}</pre></td>"
            f"<td><pre>{_e(r.target)}</pre></td><td>{answer}</td>"
            f'<td class="num"><span class="{outcome}">{outcome}</span> {score}</td>'
            f"<td>{_e(r.reason or '')}</td>"
            "</tr>"
        )
    return (
        f"<h2>{_e(run.model)}: every example <span class='muted'>({_e(run.eval_name)}, "
        f"{_e(run.run_id)})</span></h2>"
        f'<div class="filters" data-table="{table_id}">{buttons}</div>'
        f'<table id="{table_id}"><thead><tr><th>#</th><th>input</th><th>target</th>'
        f"<th>answer (<del>missing</del> <ins>extra</ins>)</th><th>score</th><th>reason</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


# --- issue 22: leakage marks (EvalResult.leakage, from eval/_leakage.py) ---
def _leak_mark(run: Run, result: ExampleResult) -> str:
    """A mark on an example whose input is in the model's training snapshot."""
    leak = (getattr(run, "leakage", None) or {}).get("examples", {}).get(result.example_id)
    if leak is None:
        return ""
    detail = "exact" if leak["kind"] == "exact" else f"near, Jaccard {leak['similarity']:.2f}"
    return (
        f'<br><span class="leaked" title="training example {_e(leak["training_example"])}">'
        f"leaked ({detail})</span>"
    )


def _leakage_notes(runs: Sequence[Run]) -> str:
    """For each run whose model's training data is known: what leaked, and the accuracy
    without it."""
    out = []
    for run in runs:
        leakage = getattr(run, "leakage", None)
        if not leakage:
            continue
        scored = [r for r in run.results if r.score is not None]
        leaked = sum(r.example_id in leakage["examples"] for r in scored)
        out.append(
            f'<p class="verdict leakage">{_e(run.model)}: {leaked} of {run.n} scored examples '
            f"leaked from its training snapshot <code>{_e(leakage['training_snapshot'][:12])}"
            f"</code> ({_e(leakage['training_dataset'])}: {leakage['exact']} exact, "
            f"{leakage['near']} near-duplicates). Accuracy without them: "
            f"<strong>{getattr(run, 'accuracy_without_leaked', run.accuracy):.1%}</strong> "
            f'over {run.n - leaked}. <span class="muted">{_e(leakage["method"])}</span></p>'
        )
    return "".join(out)


# --- end issue 22 ---


def render(runs: Sequence[Run]) -> str:
    title = " vs ".join(dict.fromkeys(run.model for run in runs))
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = (
        f"<h1>Eval report: {_e(title)}</h1>"
        f'<p class="muted">{len(runs)} run(s), made {now} by finetuner-otel. Accuracy is the '
        f"mean score of the scored examples; errors (failed calls) are counted apart.</p>"
        f"<h2>Accuracy</h2>{_chart(runs)}{_summary_table(runs)}{_leakage_notes(runs)}"
        f"{_comparisons(runs)}" + "".join(_examples(i, run) for i, run in enumerate(runs))
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>Eval report: {_e(title)}</title><style>{_CSS}</style></head>"
        f"<body>{body}<script>{_SCRIPT}</script></body></html>"
    )


def write_report(path: Path, runs: Sequence[Run]) -> Path:
    """Write the report of ``runs`` to ``path``, atomically; the first run is compared with
    each of the others, as its baselines."""
    if not runs:
        raise ValueError("a report needs at least one eval run")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(render(runs))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
