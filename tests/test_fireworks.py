"""Fireworks AI as a provider, against its wire format in the local server (testing/_fireworks):
datasets created and uploaded, supervised and DPO jobs, states mapped to ours, failures,
cancelling, retries; the real openai SDK client underneath."""

from __future__ import annotations

import json

import pytest

import finetuner_otel
from finetuner_otel.finetune import Finetuner, JobFailedError
from finetuner_otel.testing import JobScript, OpenAIServer, Reply

from .conftest import rows

BASE = "accounts/fireworks/models/llama-v3p1-8b-instruct"


def _capture(server: OpenAIServer, n: int = 6) -> None:
    client = server.client()
    for i in range(n):
        server.enqueue(Reply(["food", "travel", "tech"][i % 3]))
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "system", "content": "Classify the query."},
                {"role": "user", "content": f"query {i}"},
            ],
            dataset_name="search",
        )


def _fireworks(server: OpenAIServer, store: finetuner_otel.Store) -> Finetuner:
    return Finetuner.for_fireworks(
        api_key="fw-test", account="acme", base_url=server.url, store=store
    )


def _sent(server: OpenAIServer, collection: str) -> dict:
    [(_, _, body)] = [
        r for r in server.fireworks.requests if r[0] == "POST" and r[1].endswith(collection)
    ]
    return json.loads(body)


def test_a_supervised_job_from_upload_to_model(capture, server: OpenAIServer) -> None:
    _capture(server)
    store = capture.open_store()
    ft = _fireworks(server, store)
    search = store.get_dataset("search")
    train = search.head(4)
    val = search.filter(lambda e: e.id not in {x.id for x in train})
    train_id, val_id = ft.upload_dataset(train), ft.upload_dataset(val)
    assert train_id.startswith("accounts/acme/datasets/finetuner-")
    dataset = server.fireworks.datasets[train_id]
    assert dataset.state == "READY" and len(dataset.lines) == 4
    assert dataset.lines[0]["messages"][-1] == {"role": "assistant", "content": "food"}
    assert dataset.request["dataset"] == {"userUploaded": {}, "exampleCount": "4"}
    assert ft.upload_dataset(train) == train_id  # the same content: the same dataset (409)

    job = ft.start_job(BASE, train_id, val_id, n_epochs=2, learning_rate=1e-4, lora_rank=8)
    assert _sent(server, "/supervisedFineTuningJobs") == {
        "dataset": train_id,
        "baseModel": BASE,
        "epochs": 2,
        "learningRate": 1e-4,
        "loraRank": 8,
        "evaluationDataset": val_id,
    }
    assert job.id.startswith("supervisedFineTuningJobs/") and job.state.status == "queued"
    job.wait(poll=0, progress=False)
    assert job.state.status == "succeeded" and job.provider_status == "JOB_STATE_COMPLETED"
    assert job.fine_tuned_model.startswith("accounts/acme/models/ft-")
    assert dict(job.hyperparameters) == {"n_epochs": 2, "learning_rate": 1e-4, "lora_rank": 8}
    history = store.sql(
        "SELECT status, provider_status FROM finetune_job_history WHERE job_id = ? "
        "ORDER BY observed_at",
        [job.id],
    ).rows
    assert history == [
        ("queued", "JOB_STATE_CREATING"),
        ("queued", "JOB_STATE_PENDING"),
        ("running", "JOB_STATE_RUNNING"),
        ("running", "JOB_STATE_WRITING_RESULTS"),
        ("succeeded", "JOB_STATE_COMPLETED"),
    ]
    assert [j.id for j in ft.list_jobs()] == [job.id]
    assert ft.provider.list_jobs()[0].id == job.id
    [event] = job.events()
    assert event.message == "JOB_STATE_COMPLETED (100%)"


def test_a_dpo_job_from_preference_pairs(capture, server: OpenAIServer) -> None:
    _capture(server, 3)
    store = capture.open_store()
    for row in rows(capture):
        store.prefer(row["id"], "a better label")
    ft = _fireworks(server, store)
    file_id = ft.upload_preferences("search")  # checked by Fireworks' rules first
    assert set(server.fireworks.datasets[file_id].lines[0]) == {
        "input",
        "preferred_output",
        "non_preferred_output",
    }
    job = ft.start_job(BASE, file_id, method="dpo", beta=0.2, n_epochs=1)
    assert _sent(server, "/dpoJobs") == {
        "dataset": file_id,
        "trainingConfig": {"baseModel": BASE, "epochs": 1},
        "lossConfig": {"klBeta": 0.2},
    }
    job.wait(poll=0, progress=False)
    assert (job.method, job.state.status, job.base_model) == ("dpo", "succeeded", BASE)
    assert job.id.startswith("dpoJobs/")


def test_failure_cancel_and_retries(capture, server: OpenAIServer) -> None:
    _capture(server, 3)
    store = capture.open_store()
    ft = _fireworks(server, store)
    train_id = ft.upload_dataset(store.get_dataset("search"))
    server.fireworks.script(
        JobScript(("JOB_STATE_CREATING", "JOB_STATE_FAILED"), error_message="bad rows")
    )
    failed = ft.start_job(BASE, train_id)
    with pytest.raises(JobFailedError, match="failed: bad rows"):
        failed.wait(poll=0, progress=False)
    assert failed.events()[0].level == "error"

    job = ft.start_job(BASE, train_id)
    server.fireworks.fail_next(429, 503)  # a rate limit and an outage while following it
    assert job.cancel().state.status == "cancelled"
    assert job.provider_status == "JOB_STATE_CANCELLED"

    server.fireworks.fail_next(400, message="baseModel is not tunable")
    with pytest.raises(finetuner_otel.FinetunerError, match="fireworks answered 400: baseModel"):
        ft.start_job(BASE, train_id)
    with pytest.raises(finetuner_otel.ConfigurationError, match="not n_steps"):
        ft.start_job(BASE, train_id, n_steps=3)
    with pytest.raises(finetuner_otel.ConfigurationError, match="beta applies to DPO"):
        ft.start_job(BASE, train_id, beta=0.1)
    with pytest.raises(finetuner_otel.ConfigurationError, match="supervisedFineTuningJobs/<id>"):
        ft.get_job("ftjob-123")


def test_the_account_and_key_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FIREWORKS_API_KEY", raising=False)
    monkeypatch.delenv("FIREWORKS_ACCOUNT_ID", raising=False)
    with pytest.raises(finetuner_otel.ConfigurationError, match="FIREWORKS_API_KEY"):
        Finetuner.for_fireworks(account="acme")
    with pytest.raises(finetuner_otel.ConfigurationError, match="FIREWORKS_ACCOUNT_ID"):
        Finetuner.for_fireworks(api_key="k")
