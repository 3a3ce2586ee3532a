"""Fine-tuning: OpenAI's and Together's APIs on the local server, jobs through every status,
failures, rate limits, resuming, and what the store records."""

from __future__ import annotations

import io
import json
from pathlib import Path

import openai
import pytest

import finetuner_otel
from finetuner_otel import Dataset, Example
from finetuner_otel.finetune import (
    DatasetInvalidError,
    Finetuner,
    JobFailedError,
    ProviderError,
    TogetherProvider,
)
from finetuner_otel.testing import FineTuningAPI, JobScript, OpenAIServer, Reply

from .conftest import rows


def _capture(server: OpenAIServer, n: int = 8, dataset: str = "search") -> None:
    client = server.client()
    for i in range(n):
        server.enqueue(Reply(["food", "travel", "tech"][i % 3]))
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "system", "content": "Classify the query."},
                {"role": "user", "content": f"query {i}"},
            ],
            dataset_name=dataset,
        )


def _openai(server: OpenAIServer, store: finetuner_otel.Store) -> Finetuner:
    # No SDK retries: the tests see every error our code handles.
    return Finetuner.for_openai(client=server.client(max_retries=0), store=store)


def _together(server: OpenAIServer, store: finetuner_otel.Store) -> Finetuner:
    client = openai.OpenAI(api_key="together-test", base_url=server.url, max_retries=0)
    return Finetuner(TogetherProvider(client), store=store)


def _created(api: FineTuningAPI) -> dict:  # type: ignore[type-arg]
    """The body of the latest job-creating request."""
    return next(
        json.loads(body)
        for method, route, body in reversed(api.requests)
        if method == "POST" and route.endswith(("/fine_tuning/jobs", "/fine-tunes"))
    )


def _no_sleep(delays: list[float] | None = None):  # type: ignore[no-untyped-def]
    def sleep(seconds: float) -> None:
        if delays is not None:
            delays.append(seconds)

    return sleep


def test_openai_from_dataset_to_fine_tuned_model(capture, server: OpenAIServer) -> None:
    _capture(server)
    store = capture.open_store()
    # split by position: a hash split of 8 examples may leave validation empty
    search = store.get_dataset("search")
    train, val = search.head(6), search.filter(lambda e: e.id not in {x.id for x in search[:6]})
    ft = _openai(server, store)
    train_id, val_id = ft.upload_dataset(train), ft.upload_dataset(val)
    # what was uploaded is the export, byte for byte, and it is a recorded snapshot
    uploaded = server.fine_tuning.files[train_id]
    assert [json.loads(line) for line in uploaded.content.decode().splitlines()] == [
        e.to_openai() for e in train
    ]
    job = ft.start_job(
        "gpt-4o-mini-2024-07-18",
        train_id,
        val_id,
        n_epochs=3,
        suffix="search",
        seed=7,
        metadata={"team": "search"},
    )
    assert job.status == "queued" and job.state.provider_status in ("validating_files", "queued")
    sent = _created(server.fine_tuning)  # the create request
    assert sent["method"] == {
        "type": "supervised",
        "supervised": {"hyperparameters": {"n_epochs": 3}},
    }
    assert (sent["suffix"], sent["seed"], sent["metadata"]) == ("search", 7, {"team": "search"})

    out = io.StringIO()
    assert job.wait(poll=0, progress=out, sleep=_no_sleep()) is job
    assert job.state.status == "succeeded"
    assert job.fine_tuned_model.startswith("ft:gpt-4o-mini-2024-07-18:finetuner-test:search:")
    assert job.trained_tokens == 12_000
    log = out.getvalue()
    assert "Validating training file" in log and "succeeded" in log
    assert "step 3/3" in log  # the provider's metrics events drive the progress bar
    assert next(e.message for e in job.events()) == "Validating training file"

    # the store says what trained on what, and every status the job was seen in
    [lineage] = store.sql("SELECT * FROM finetune_lineage").dicts()
    assert lineage["dataset"] == "search"
    assert lineage["training_snapshot"] == store.snapshots("search")[0].id
    assert lineage["training_examples"] == len(train)
    assert lineage["validation_examples"] == len(val)
    assert lineage["fine_tuned_model"] == job.fine_tuned_model
    history = store.sql(
        "SELECT provider_status FROM finetune_job_history ORDER BY observed_at, provider_status"
    )
    assert {r[0] for r in history} == {"validating_files", "queued", "running", "succeeded"}
    [listed] = ft.list_jobs()
    assert (listed.id, listed.state.status) == (job.id, "succeeded")


def test_validating_files_is_never_taken_for_finished(capture, server: OpenAIServer) -> None:
    _capture(server, 3)
    store = capture.open_store()
    ft = _openai(server, store)
    server.fine_tuning.script(
        JobScript(["validating_files", "validating_files", "validating_files", "succeeded"])
    )
    job = ft.start_job("gpt-4o-mini", ft.upload_dataset(store.get_dataset("search")))
    polls: list[float] = []
    job.wait(poll=1, progress=False, sleep=_no_sleep(polls))
    assert job.state.status == "succeeded" and len(polls) == 2  # slept through both reads


def test_a_failed_job_raises_with_the_providers_error(capture, server: OpenAIServer) -> None:
    _capture(server, 3)
    store = capture.open_store()
    ft = _openai(server, store)
    server.fine_tuning.script(
        JobScript(
            ["validating_files", "failed"],
            error_code="invalid_training_file",
            error_message="The job failed due to an invalid training file.",
        )
    )
    job = ft.start_job("gpt-4o-mini", ft.upload_dataset(store.get_dataset("search")))
    with pytest.raises(JobFailedError, match="invalid training file") as failure:
        job.wait(poll=0, progress=False, sleep=_no_sleep())
    assert failure.value.job.state.status == "failed"
    assert job.error == "The job failed due to an invalid training file. (invalid_training_file)"
    [[status, error]] = store.sql("SELECT status, error FROM finetune_jobs").rows
    assert status == "failed" and "invalid training file" in error
    assert job.wait(poll=0, progress=False, raise_on_failure=False).state.status == "failed"


def test_rate_limits_and_server_errors_back_off_and_never_end_the_wait(
    capture, server: OpenAIServer
) -> None:
    _capture(server, 3)
    store = capture.open_store()
    ft = _openai(server, store)
    job = ft.start_job("gpt-4o-mini", ft.upload_dataset(store.get_dataset("search")))
    server.fine_tuning.fail_next(429, 500, 503)
    delays: list[float] = []
    out = io.StringIO()
    job.wait(poll=2, progress=out, sleep=_no_sleep(delays))
    assert job.state.status == "succeeded"
    assert delays[:3] == [4, 8, 16]  # doubling from the poll interval...
    assert set(delays[3:]) == {2}  # ...and back to it once the provider answers again
    assert "answered 429" in out.getvalue() and "answered 503" in out.getvalue()


def test_provider_errors_name_the_problem(capture, server: OpenAIServer) -> None:
    ft = _openai(server, capture.open_store())
    with pytest.raises(ProviderError, match=r"answered 400: invalid training_file: file-nope"):
        ft.start_job("gpt-4o-mini", "file-nope")
    with pytest.raises(finetuner_otel.ConfigurationError, match="not learning_rate"):
        ft.start_job("gpt-4o-mini", "file-x", learning_rate=0.1)
    with pytest.raises(finetuner_otel.ConfigurationError, match="'supervised' or 'dpo'"):
        ft.start_job("gpt-4o-mini", "file-x", method="rlhf")
    with pytest.raises(ProviderError, match="No fine-tuning job"):
        ft.get_job("ftjob-missing")


def test_interrupted_and_resumed_from_the_stored_job_id(capture, server: OpenAIServer) -> None:
    _capture(server, 3)
    store = capture.open_store()
    ft = _openai(server, store)
    job = ft.start_job("gpt-4o-mini", ft.upload_dataset(store.get_dataset("search")))

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        job.wait(poll=1, progress=out, sleep=interrupt)
    assert f"Resume with .get_job('{job.id}').wait()" in out.getvalue()
    # a new process: a new Finetuner, the job id from the store
    again = _openai(server, finetuner_otel.Store(store.path))
    [recorded] = again.list_jobs()
    assert recorded.id == job.id and recorded.state.status != "succeeded"
    assert again.get_job(job.id).wait(poll=0, progress=False).state.status == "succeeded"


def test_an_invalid_dataset_is_refused_before_any_upload(
    capture, server: OpenAIServer, tmp_path: Path
) -> None:
    bad = Dataset(
        "bad",
        [
            Example(
                "a",
                "bad",
                [{"role": "user", "content": "q"}],
                {"role": "assistant", "content": "a"},
            ),
            Example(
                "b",
                "bad",
                [{"role": "robot", "content": "q"}],
                {"role": "assistant", "content": "a"},
            ),
        ],
    )
    ft = _openai(server, capture.open_store())
    with pytest.raises(DatasetInvalidError, match="unrecognized_role") as refused:
        ft.upload_dataset(bad)
    assert refused.value.report.errors == {"unrecognized_role": 1}
    assert "example 2 (b)" in str(refused.value)
    assert server.fine_tuning.files == {}
    with pytest.raises(finetuner_otel.ConfigurationError, match="no examples"):
        ft.upload_dataset(Dataset("empty", []))


def test_cancel(capture, server: OpenAIServer) -> None:
    _capture(server, 3)
    store = capture.open_store()
    ft = _openai(server, store)
    job = ft.start_job("gpt-4o-mini", ft.upload_dataset(store.get_dataset("search")))
    assert job.cancel().state.status == "cancelled"
    with pytest.raises(JobFailedError, match="cancelled"):
        job.wait(poll=0, progress=False)


def test_dpo_from_preference_pairs(capture, server: OpenAIServer) -> None:
    _capture(server, 3)
    store = capture.open_store()
    for row in rows(capture):
        store.prefer(row["id"], "a better label")
    ft = _openai(server, store)
    file_id = ft.upload_preferences("search")
    first = json.loads(server.fine_tuning.files[file_id].content.decode().splitlines()[0])
    assert set(first) == {"input", "preferred_output", "non_preferred_output"}
    job = ft.start_job("gpt-4o-mini", file_id, method="dpo", beta=0.1, n_epochs=2)
    sent = _created(server.fine_tuning)
    assert sent["method"] == {
        "type": "dpo",
        "dpo": {"hyperparameters": {"beta": 0.1, "n_epochs": 2}},
    }
    job.wait(poll=0, progress=False)
    [[method, fmt]] = store.sql(
        "SELECT j.method, u.format FROM finetune_jobs j JOIN finetune_uploads u "
        "ON u.file_id = j.training_file"
    ).rows
    assert (method, fmt) == ("dpo", "openai_dpo")
    with pytest.raises(finetuner_otel.ConfigurationError, match="no preference pairs"):
        _capture(server, 1, dataset="other") or ft.upload_preferences("other")


def test_together_lora_job_through_every_status(capture, server: OpenAIServer) -> None:
    _capture(server)
    store = capture.open_store()
    ft = _together(server, store)
    file_id = ft.upload_dataset(store.get_dataset("search"))
    uploaded = server.together.files[file_id]
    assert uploaded.purpose == "fine-tune" and uploaded.filename == "search.jsonl"
    job = ft.start_job(
        "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
        file_id,
        n_epochs=2,
        lora_r=16,
        suffix="search",
    )
    sent = _created(server.together)
    assert sent["training_type"] == {
        "type": "Lora",
        "lora_r": 16,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "lora_trainable_modules": "all-linear",
    }
    assert sent["training_method"] == {"method": "sft", "train_on_inputs": "auto"}
    assert (sent["n_epochs"], sent["suffix"]) == (2, "search")
    out = io.StringIO()
    job.wait(poll=0, progress=out, sleep=_no_sleep())
    assert job.state.status == "succeeded"
    assert job.fine_tuned_model.startswith(
        "finetuner-test/Meta-Llama-3.1-8B-Instruct-Reference-search"
    )
    statuses = {r[0] for r in store.sql("SELECT provider_status FROM finetune_job_history")}
    assert statuses == {"pending", "queued", "running", "compressing", "uploading", "completed"}
    assert "Compressing output model" in out.getvalue()
    assert job.hyperparameters["lora"] is True


def test_together_failure_cancel_and_full_training(capture, server: OpenAIServer) -> None:
    _capture(server, 3)
    store = capture.open_store()
    ft = _together(server, store)
    file_id = ft.upload_dataset(store.get_dataset("search"))
    server.together.script(
        JobScript(["pending", "running", "error"], error_message="CUDA out of memory")
    )
    failing = ft.start_job("m", file_id, lora=False)
    assert _created(server.together)["training_type"] == {"type": "Full"}
    with pytest.raises(JobFailedError, match="CUDA out of memory"):
        failing.wait(poll=0, progress=False)
    job = ft.start_job("m", file_id)
    job.cancel()
    assert job.state.provider_status == "cancel_requested" and not job.done
    assert job.wait(poll=0, progress=False, raise_on_failure=False).state.status == "cancelled"
    with pytest.raises(finetuner_otel.ConfigurationError, match="LoRA jobs"):
        ft.start_job("m", file_id, lora=False, lora_r=8)


def test_api_keys_and_the_retired_anyscale(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(finetuner_otel.ConfigurationError, match="OPENAI_API_KEY"):
        Finetuner.for_openai()
    with pytest.raises(finetuner_otel.ConfigurationError, match="TOGETHER_API_KEY"):
        Finetuner.for_together()
    monkeypatch.setenv("ANYSCALE_API_KEY", "esecret")
    # Nothing listens on this port: the same error as the retired endpoint gives.
    ft = Finetuner.for_anyscale(base_url="http://127.0.0.1:9/v1", store=tmp_path / "s.duckdb")
    with pytest.raises(ProviderError, match="was retired in 2024"):
        ft.get_job("ftjob-1")
