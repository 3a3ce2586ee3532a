"""The local trainer (TRL + PEFT LoRA) on the CPU, with a tiny model built in the test."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from finetuner_otel.finetune import Finetuner, JobFailedError
from finetuner_otel.testing import OpenAIServer, Reply

from ._tiny_model import build_tiny_model

pytestmark = pytest.mark.slow

QUERIES = {
    "best pizza dough": "food",
    "cheap flights to rome": "travel",
    "update gpu drivers": "tech",
    "easy pasta recipe": "food",
    "hotels in paris": "travel",
    "laptop battery life": "tech",
    "sushi near me": "food",
    "train tickets to berlin": "travel",
}


@pytest.fixture
def tiny_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may be downloaded
    texts = [f"Label the query. {q} {a} system user assistant" for q, a in QUERIES.items()]
    return build_tiny_model(tmp_path / "tiny-model", texts)


def _capture(server: OpenAIServer) -> None:
    client = server.client()
    for query, label in QUERIES.items():
        server.enqueue(Reply(label))
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "system", "content": "Label the query."},
                {"role": "user", "content": query},
            ],
            dataset_name="queries",
        )


def test_the_local_trainer_fits_a_tiny_model_and_its_loss_goes_down(
    capture, server: OpenAIServer, tiny_model: Path, tmp_path: Path
) -> None:
    _capture(server)
    store = capture.open_store()
    # split by position: a hash split of 8 examples may leave validation empty
    queries = store.get_dataset("queries")
    train, val = queries.head(6), queries.filter(lambda e: e.id not in {x.id for x in queries[:6]})
    ft = Finetuner.for_local(tmp_path / "models", store=store)
    job = ft.start_job(
        str(tiny_model),
        ft.upload_dataset(train),
        ft.upload_dataset(val),
        n_epochs=8,
        batch_size=2,
        learning_rate=5e-3,
    )
    job.wait(poll=0.2, progress=False, timeout=300)
    assert job.state.status == "succeeded", job.error
    adapter = Path(job.fine_tuned_model)
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "tokenizer_config.json").is_file()
    assert job.trained_tokens > 0

    losses = [e.data["train_loss"] for e in job.events() if "train_loss" in e.data]
    assert len(losses) >= 8
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3  # it learned
    assert any("valid_loss" in e.data for e in job.events())
    throughput = [e for e in job.events() if e.data.get("tokens_per_second")]
    assert throughput and throughput[0].data["device"] == "cpu"

    # another process (another Finetuner) follows the same job from the store
    again = Finetuner.for_local(tmp_path / "models", store=store.path)
    [recorded] = again.list_jobs()
    assert recorded.id == job.id and recorded.state.status == "succeeded"
    assert again.get_job(job.id).fine_tuned_model == job.fine_tuned_model
    [[dataset, snapshot]] = store.sql(
        "SELECT dataset, training_snapshot FROM finetune_lineage"
    ).rows
    assert dataset == "queries" and snapshot in {s.id for s in store.snapshots()}


def test_a_local_job_that_fails_or_is_cancelled(
    capture, server: OpenAIServer, tiny_model: Path, tmp_path: Path
) -> None:
    _capture(server)
    store = capture.open_store()
    ft = Finetuner.for_local(tmp_path / "models", store=store)
    file_id = ft.upload_dataset(store.get_dataset("queries"))

    missing = ft.start_job(str(tmp_path / "no-such-model"), file_id)
    with pytest.raises(JobFailedError, match="no-such-model"):
        missing.wait(poll=0.2, progress=False, timeout=120)

    long = ft.start_job(str(tiny_model), file_id, max_steps=100_000)
    deadline = time.monotonic() + 120
    while long.refresh().state.provider_status != "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    pid = int((tmp_path / "models" / "jobs" / long.id / "pid").read_text())
    assert long.cancel().state.status == "cancelled"
    for _ in range(300):  # the training process is stopped
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the training process still runs after cancel()")
    assert long.status == "cancelled"


def test_bad_local_settings_are_refused(tmp_path: Path) -> None:
    from finetuner_otel import ConfigurationError

    with pytest.raises(ConfigurationError, match="not epochs"):
        Finetuner.for_local(tmp_path, epochs=3)
    ft = Finetuner.for_local(tmp_path, store=tmp_path / "s.duckdb")
    with pytest.raises(ConfigurationError, match="was not uploaded"):
        ft.start_job("model", "file-local-nope")
    with pytest.raises(ConfigurationError, match="supervised only"):
        ft.start_job("model", "file-local-nope", method="dpo")
