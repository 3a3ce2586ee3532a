"""What ``finetune.serve`` refuses, each with a message that names the fix (no model loaded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import finetuner_otel
from finetuner_otel.finetune import Finetuner, serve
from finetuner_otel.testing import OpenAIServer


def test_what_cannot_be_served(capture, server: OpenAIServer, tmp_path: Path) -> None:
    with pytest.raises(finetuner_otel.ConfigurationError, match="holds no LoRA adapter"):
        serve(tmp_path)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8}))
    with pytest.raises(finetuner_otel.ConfigurationError, match="does not name its base model"):
        serve(adapter)
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "b"}))
    with pytest.raises(finetuner_otel.ConfigurationError, match="backend is one of auto"):
        serve(adapter, backend="tgi")
    with pytest.raises(finetuner_otel.ConfigurationError, match="needs vLLM installed and a GPU"):
        serve(adapter, backend="vllm")  # neither is here

    # a job that is not a succeeded local one
    ft = Finetuner.for_openai(client=server.client(max_retries=0), store=capture.open_store())
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    job = ft.start_job("gpt-4o-mini", ft.provider.upload(path))
    with pytest.raises(finetuner_otel.ConfigurationError, match="only a succeeded local job"):
        job.serve()
