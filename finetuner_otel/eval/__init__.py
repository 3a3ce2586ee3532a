"""Evals: is the fine-tuned model better, and by how much?

::

    from finetuner_otel.eval import Eval

    class ClassificationEval(Eval):
        def compare(self, prediction: str, target: str):
            return prediction.strip() == target.strip()

    base = ClassificationEval(client).run("gpt-4o-mini", val, temperature=0)
    base.accuracy, base.ci95                      # Wilson interval
    tuned = ClassificationEval(client).run(job.fine_tuned_model, val, temperature=0)
    tuned.compare_to(base)                        # paired, with its p-value
    tuned.report("report.html", base)

Built in: ``ExactMatch``, ``JSONMatch``, ``ToolCallMatch``, ``JudgeEval`` (an LLM judge with a
rubric). Runs and per-example rows are stored: ``eval_runs``, ``eval_results``.
"""

from ._builtin import BUILTIN, ExactMatch, JSONMatch, JudgeEval, ToolCallMatch
from ._eval import Eval
from ._records import load_run
from ._results import ExampleResult, Score
from ._run import Comparison, EvalResult
from ._shadow import ShadowPair, ShadowReport, shadow_report

__all__ = [
    "BUILTIN",
    "Comparison",
    "Eval",
    "EvalResult",
    "ExactMatch",
    "ExampleResult",
    "JSONMatch",
    "JudgeEval",
    "Score",
    "ShadowPair",
    "ShadowReport",
    "ToolCallMatch",
    "load_run",
    "shadow_report",
]
