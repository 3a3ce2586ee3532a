"""``finetuner_otel._cot``: a chain-of-thought completion split into reasoning and answer."""

from __future__ import annotations

from typing import Any

from finetuner_otel._cot import answer_only, split_rationale


def test_split_a_well_formed_completion() -> None:
    text = "  <reasoning>\n2 + 2\nis 4\n</reasoning>\n<answer> 4 </answer>\n"
    assert split_rationale(text) == ("2 + 2\nis 4", "4")


def test_any_other_text_is_all_answer() -> None:
    for text in (
        "4",
        "<answer>4</answer>",  # no reasoning
        "<reasoning>r</reasoning>",  # no answer
        "<reasoning>r</reasoning><answer>4</answer> and more",  # text after the answer
        "before <reasoning>r</reasoning><answer>4</answer>",
    ):
        assert split_rationale(text) == (None, text)


def test_answer_only_cuts_the_reasoning_out_of_a_message() -> None:
    message = {"role": "assistant", "content": "<reasoning>r</reasoning><answer>a</answer>"}
    assert answer_only(message) == {"role": "assistant", "content": "a"}
    assert message["content"].startswith("<reasoning>")  # not changed in place
    plain = {"role": "assistant", "content": "a"}
    assert answer_only(plain) is plain
    calls: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": []}
    assert answer_only(calls) is calls
