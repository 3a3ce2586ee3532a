"""The seed's whole flow on this machine, with a tiny model on the CPU: capture (the real SDK
against the local OpenAI server, instrumented), split, train (Finetuner.for_local), serve the
adapter, evaluate the base and the tuned model on the held-out split, compare, report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from finetuner_otel.eval import ExactMatch
from finetuner_otel.finetune import Finetuner, serve
from finetuner_otel.testing import OpenAIServer, Reply

from ._tiny_model import build_tiny_model

pytestmark = pytest.mark.slow

# One answer for every query: a tiny random model can learn the answer (not to generalise a
# classification from a handful of examples), so the tuned model beats the base for certain.
QUERIES = (
    "best pizza dough",
    "cheap flights to rome",
    "update gpu drivers",
    "easy pasta recipe",
    "hotels in paris",
    "laptop battery life",
    "sushi near me",
    "train tickets to berlin",
    "new phone charger",
    "vegan curry ideas",
    "beach resorts in spain",
    "fix wifi router",
)
ANSWER = "noted"
SYSTEM = "Acknowledge the query."


@pytest.fixture
def tiny_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may be downloaded
    texts = [f"{SYSTEM} {q} {ANSWER} system user assistant" for q in QUERIES]
    return build_tiny_model(tmp_path / "tiny-model", texts)


def test_capture_split_train_serve_evaluate_compare_report(
    capture, server: OpenAIServer, tiny_model: Path, tmp_path: Path
) -> None:
    client = server.client()
    for query in QUERIES:  # capture
        server.enqueue(Reply(ANSWER))
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": query}],
            dataset_name="queries",
        )
    store = capture.open_store()
    train, val = store.get_dataset("queries").split(0.7, seed=3)  # split
    assert len(train) and len(val)

    ft = Finetuner.for_local(tmp_path / "models", store=store)  # train
    job = ft.start_job(
        str(tiny_model),
        ft.upload_dataset(train),
        n_epochs=20,
        batch_size=4,
        learning_rate=1e-2,
    )
    job.wait(poll=0.2, progress=False, timeout=600)
    assert job.state.status == "succeeded", job.error

    with job.serve(max_new_tokens=4) as served:  # serve
        assert served.model == job.id and served.base_model == str(tiny_model)
        evaluator = ExactMatch(openai.OpenAI(base_url=served.url, api_key="local"), store=store)
        evaluator.progress = False
        base = evaluator.run(served.base_model, val, temperature=0)  # evaluate
        tuned = evaluator.run(served.model, val, temperature=0)
        assert served.stats.requests == 2 * len(val)
    assert [r.status for r in base.results + tuned.results] == ["ok"] * (2 * len(val))
    assert base.accuracy == 0.0 and tuned.accuracy == 1.0  # the adapter learned it
    comparison = tuned.compare_to(base)  # compare
    assert comparison.difference == pytest.approx(tuned.accuracy - base.accuracy)
    report = tuned.report(tmp_path / "report.html", base)  # report
    assert job.id in Path(report).read_text()

    # the eval calls were captured like any other: purpose eval, the job's id as their model
    assert capture.flush()
    rows = store.sql(
        "SELECT request_model, count(*) FROM calls "
        "WHERE untrainable_reason = 'an evaluation call' GROUP BY ALL"
    ).rows
    assert sorted(rows) == sorted([(job.id, len(val)), (str(tiny_model), len(val))])
    assert len(store.get_dataset("queries")) == len(QUERIES)  # and none became training data


def test_serving_streams_in_the_chat_wire_format(
    capture, server: OpenAIServer, tiny_model: Path, tmp_path: Path
) -> None:
    server.enqueue(Reply("food"))
    server.client().chat.completions.create(
        model="m", messages=[{"role": "user", "content": "pizza"}], dataset_name="d"
    )
    store = capture.open_store()
    ft = Finetuner.for_local(tmp_path / "models", store=store)
    job = ft.start_job(str(tiny_model), ft.upload_dataset(store.get_dataset("d")), max_steps=1)
    job.wait(poll=0.2, progress=False, timeout=600)
    with serve(tmp_path / "models" / "jobs" / job.id, max_new_tokens=6) as served:
        client = served.client()
        messages = [{"role": "user", "content": [{"type": "text", "text": "pizza"}]}]
        whole = client.chat.completions.create(model=served.model, messages=messages)
        stream = client.chat.completions.create(
            model=served.model,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == whole.choices[0].message.content  # greedy: the same answer
        assert chunks[0].choices[0].delta.role == "assistant"
        assert chunks[-2].choices[0].finish_reason == "stop"
        assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
        with pytest.raises(openai.NotFoundError, match="does not exist here"):
            client.chat.completions.create(model="gpt-4o", messages=messages)
        raw = client.chat.completions.with_raw_response.create(
            model=served.model, messages=messages, stream=True
        )
        assert raw.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in raw.http_response.iter_lines() if line]
        assert lines[-1] == "data: [DONE]"
        assert json.loads(lines[0].removeprefix("data: "))["object"] == "chat.completion.chunk"

    # the same adapter through the CLI: `finetuner finetune serve JOB`, until Ctrl-C
    command = [sys.executable, "-m", "finetuner_otel.cli", "--db", str(capture.open_store().path)]
    command += ["finetune", "serve", job.id, "--output-dir", str(tmp_path / "models")]
    process = subprocess.Popen(
        [*command, "--port", "0"], stderr=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    try:
        line = process.stderr.readline() if process.stderr else ""
        while line and " at http" not in line:
            line = process.stderr.readline() if process.stderr else ""
        url = line.split(" at ", 1)[1].split(";", 1)[0]
        answer = openai.OpenAI(base_url=url, api_key="local").chat.completions.create(
            model=job.id, messages=messages, max_tokens=6
        )
        assert answer.choices[0].message.content == whole.choices[0].message.content
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
        if process.stderr:
            process.stderr.close()
    assert code == 0
