"""The built-in evals: exact match, JSON match, tool-call match, and an LLM judge."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError
from .._json import dumps
from .._messages import last_user_message
from ..store import Example
from ._eval import Eval
from ._results import Score

if TYPE_CHECKING:
    import openai


class ExactMatch(Eval):
    """The answer's text equals the target's, ignoring surrounding white space."""

    name = "exact"

    def compare(self, prediction: Any, target: Any) -> bool:
        return str(prediction).strip() == str(target).strip()


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def _json(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    return json.loads(fenced.group(1) if fenced else stripped)


class JSONMatch(Eval):
    """The answer and the target are the same JSON value (key order free; a ```json fence
    around the answer is allowed)."""

    name = "json"

    def compare(self, prediction: Any, target: Any) -> Score:
        try:
            expected = _json(target)
        except ValueError as exc:
            raise ConfigurationError(f"the target is not JSON: {exc}") from exc
        try:
            got = _json(prediction)
        except ValueError as exc:
            return Score(0.0, f"the answer is not JSON ({exc})")
        if got == expected:
            return Score(1.0)
        return Score(0.0, "different JSON")


def _calls(message: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(name, arguments as canonical JSON) of each tool call of a message."""
    out = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or call.get("custom") or {}
        raw = function.get("arguments", function.get("input", ""))
        try:
            arguments = dumps(json.loads(raw), sort_keys=True) if raw else "{}"
        except (TypeError, ValueError):
            arguments = str(raw)
        out.append((str(function.get("name")), arguments))
    return out


class ToolCallMatch(Eval):
    """The answer calls the same tools with the same arguments as the target (argument key
    order and the order of parallel calls free). An example's tools are offered to the model."""

    name = "tool-call"

    def extract(self, message: Mapping[str, Any]) -> list[tuple[str, str]]:
        return _calls(message)

    def compare(self, prediction: Any, target: Any) -> Score:
        if Counter(map(tuple, prediction)) == Counter(map(tuple, target)):
            return Score(1.0)
        names = sorted(name for name, _ in prediction)
        expected = sorted(name for name, _ in target)
        if names != expected:
            return Score(0.0, f"called {names or 'no tool'}, expected {expected or 'no tool'}")
        return Score(0.0, "same tools, different arguments")


JUDGE_SYSTEM = """You grade an AI assistant's answer against a reference answer.
Rubric:
{rubric}

Reply with a JSON object only: {{"score": <a number from 0 to 1>, "reason": "<one sentence>"}}.
1 means the answer fully meets the rubric; 0 means it does not at all."""

JUDGE_USER = """Question:
{question}

Reference answer:
{reference}

Answer to grade:
{answer}"""


class JudgeEval(Eval):
    """An LLM grades each answer against the reference by ``rubric``: a score in [0, 1] with
    a reason. ``judge_model`` is any chat model; ``judge_client`` the client it is called with
    (default: the evaluated model's client). Judge calls are cached and retried like the others."""

    name = "judge"

    def __init__(
        self,
        client: openai.OpenAI,
        *,
        rubric: str = "The answer says the same as the reference answer.",
        judge_model: str,
        judge_client: openai.OpenAI | None = None,
        **options: Any,
    ) -> None:
        super().__init__(client, **options)
        if not isinstance(judge_model, str) or not judge_model:
            raise ConfigurationError("JudgeEval needs judge_model=, the model that grades")
        self.rubric = rubric
        self.judge_model = judge_model
        self.judge_client = judge_client

    def target(self, example: Example) -> dict[str, str]:
        asked = last_user_message(example.messages)
        question = self.extract(asked) if asked is not None else ""
        return {"question": question, "reference": self.extract(example.completion)}

    def compare(self, prediction: Any, target: Any) -> Score:
        messages = [
            {"role": "system", "content": JUDGE_SYSTEM.format(rubric=self.rubric)},
            {
                "role": "user",
                "content": JUDGE_USER.format(
                    question=target["question"], reference=target["reference"], answer=prediction
                ),
            },
        ]
        answer = self._complete(
            self.judge_model,
            messages,
            {"temperature": 0, "response_format": {"type": "json_object"}},
            client=self.judge_client,
        )[0]
        text = self.extract(answer)
        try:
            verdict = _json(text)
            value = verdict.get("score", verdict.get("pass"))
            score = float(value)
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"the judge's reply is not a score: {text[:200]!r}") from exc
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"the judge scored {score}, outside [0, 1]")
        reason = verdict.get("reason")
        return Score(score, str(reason) if reason is not None else None)


BUILTIN: dict[str, type[Eval]] = {
    "exact": ExactMatch,
    "json": JSONMatch,
    "tool-call": ToolCallMatch,
    "judge": JudgeEval,
}
