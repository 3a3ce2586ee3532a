"""Shadow evaluation on live traffic and the guarded switch (issue 24), on the local server: a
production model and a candidate scripted to disagree on a known share of the inputs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

import finetuner_otel
from finetuner_otel.eval import load_run, shadow_report
from finetuner_otel.testing import ErrorReply, OpenAIServer, RecordedRequest, Reply

from .conftest import rows


class Models:
    """Production ("prod") labels a ticket; the candidate ("cand") agrees except where told."""

    def __init__(self) -> None:
        self.disagree_on: set[int] = set()  # ticket numbers the candidate gets wrong
        self.disagree_all = False
        self.fail = False
        self.slow = 0.0

    def __call__(self, request: RecordedRequest) -> Any:
        body = request.json or {}
        text = body["messages"][-1]["content"]
        number = int(text.split()[-1])
        label = "billing" if number % 2 else "bug"
        if body.get("model") == "cand":
            if self.slow:
                time.sleep(self.slow)
            if self.fail:
                return ErrorReply(500, "the candidate is down")
            if self.disagree_all or number in self.disagree_on:
                label = "feature"
        return Reply(label, prompt_tokens=5, completion_tokens=1)


@pytest.fixture
def models() -> Models:
    return Models()


@pytest.fixture
def live(models: Models) -> Iterator[OpenAIServer]:
    with OpenAIServer(models) as server:
        yield server


def _tickets(client: openai.OpenAI, numbers: range, dataset: str = "tickets") -> list[str]:
    out = []
    for n in numbers:
        reply = client.chat.completions.create(
            model="prod",
            messages=[{"role": "user", "content": f"ticket {n}"}],
            dataset_name=dataset,
        )
        out.append(reply.choices[0].message.content or "")
    return out


def test_sampled_shadow_calls_are_stored_beside_production_and_change_nothing(
    db: Path, live: OpenAIServer, models: Models
) -> None:
    client = live.client(max_retries=0)
    with finetuner_otel.instrument(db) as handle:
        bare = _tickets(client, range(300))
        shadow = finetuner_otel.shadow("cand", datasets=["tickets"], sample=0.25, seed=7)
        try:
            shadowed = _tickets(client, range(300))
            _tickets(client, range(40), dataset="other")  # not a shadowed dataset
            live.enqueue(ErrorReply(400, "bad request"))
            with pytest.raises(openai.BadRequestError, match="bad request"):
                _tickets(client, range(1))  # the user's own errors, as they were
            assert shadow.drain()
        finally:
            shadow.stop()
        stored = rows(handle)
    assert shadowed == bare  # the user's results, identical with the shadow on
    stats = shadow.stats
    assert stats.offered == 300  # completed calls of "tickets" only (the failed one is not)
    # Binomial(300, 0.25): mean 75, sd 7.5; four sd either way.
    assert 45 <= stats.sampled <= 105
    assert stats.sent == stats.sampled and stats.errors == 0
    candidates = [r for r in stored if r["request_model"] == "cand"]
    assert len(candidates) == stats.sent
    production = {r["trace_id"] + r["span_id"]: r for r in stored if r["request_model"] == "prod"}
    for row in candidates:
        assert row["attributes"]["finetuner.purpose"] == "shadow" and not row["trainable"]
        shadowed_call = production[row["attributes"]["finetuner.shadow.of"]]
        assert shadowed_call["dataset"] == row["dataset"] == "tickets"
        assert shadowed_call["messages"] == row["messages"]  # the same input, the model swapped
    examples = finetuner_otel.open_store(db).get_dataset("tickets")
    assert len(examples) == 600  # shadow calls never become training examples


def test_budgets_and_a_full_queue_drop_and_count(
    db: Path, live: OpenAIServer, models: Models
) -> None:
    client = live.client(max_retries=0)
    with finetuner_otel.instrument(db):
        with finetuner_otel.shadow("cand", sample=1.0, max_per_minute=5) as shadow:
            _tickets(client, range(20))
            assert shadow.drain()
        assert (shadow.stats.sent, shadow.stats.dropped_rate) == (5, 15)
        with finetuner_otel.shadow("cand", sample=1.0, max_daily_tokens=10) as shadow:
            for n in range(8):
                _tickets(client, range(n, n + 1))
                assert shadow.drain()
        # 6 tokens a call: the third call would start over the budget of 10.
        assert (shadow.stats.sent, shadow.stats.dropped_tokens) == (2, 6)
        models.slow = 0.3
        with finetuner_otel.shadow("cand", sample=1.0, queue_size=2) as shadow:
            started = time.monotonic()
            _tickets(client, range(12))
            assert time.monotonic() - started < 3.0  # the user's calls never wait on it
            assert shadow.drain()
        assert shadow.stats.dropped_queue_full >= 1
        assert shadow.stats.sent + shadow.stats.dropped_queue_full == 12


def test_the_live_run_and_the_switch_refusing_then_routing_then_withdrawn(
    db: Path, live: OpenAIServer, models: Models
) -> None:
    client = live.client(max_retries=0)
    models.disagree_on = {3, 11}
    with finetuner_otel.instrument(db) as handle:
        shadow = finetuner_otel.shadow("cand", datasets=["tickets"], sample=1.0)
        _tickets(client, range(20))
        assert shadow.drain()
        route = finetuner_otel.route(
            "tickets", "cand", share=0.5, require_agreement=0.8, check_every=None, seed=3
        )
        # 18 of 20 agree (90%), but the interval's lower bound is 70%: not yet.
        assert not route.active and "refused" in route.reason
        report = route.report
        assert (report.n, len(report.disagreements)) == (20, 2)
        assert report.agreement == pytest.approx(0.9)
        before = _tickets(client, range(100, 110))
        assert route.routed == 0
        _tickets(client, range(200, 300))  # 100 more, all agreeing
        assert shadow.drain()
        assert route.refresh() and "routing 50%" in route.reason
        routed_answers = _tickets(client, range(300, 340))
        assert 8 <= route.routed <= 32  # Binomial(40, 0.5), four sd either way
        assert routed_answers == ["billing" if n % 2 else "bug" for n in range(300, 340)]
        # A candidate that fails: the model asked for answers instead.
        models.fail = True
        failed_over = _tickets(client, range(400, 420))
        assert failed_over == ["billing" if n % 2 else "bug" for n in range(400, 420)]
        models.fail = False
        # Now the candidate disagrees on everything: the live agreement falls, and it stops.
        models.disagree_all = True
        _tickets(client, range(500, 700))  # about half routed, half shadowed
        assert shadow.drain()
        assert not route.refresh() and "withdrawn" in route.reason
        routed = route.routed
        _tickets(client, range(600, 610))
        assert route.routed == routed
        route.stop()
        shadow.stop()
        stored = rows(handle)
    assert before == ["billing" if n % 2 else "bug" for n in range(100, 110)]
    tagged = [r for r in stored if r["attributes"].get("finetuner.routed_from") == "prod"]
    assert tagged and all(r["request_model"] == "cand" for r in tagged)
    fallbacks = [r for r in stored if r["attributes"].get("finetuner.route.fallback") == "cand"]
    assert fallbacks and all(r["request_model"] == "prod" and r["trainable"] for r in fallbacks)
    store = finetuner_otel.open_store(db)
    final = shadow_report(store, "tickets", "cand")
    assert final.agreement < 0.8 and final.latency()["candidate"]["p50"] is not None
    assert final.tokens()["candidate"] > 0 and final.by_day
    run = load_run(store, final.run_id)  # the live run, replaced as it accrued
    assert run.n == final.n and run.eval_name == "shadow:exact"


def test_a_correction_is_the_target_and_the_paired_test_uses_it(
    db: Path, live: OpenAIServer, models: Models
) -> None:
    client = live.client(max_retries=0)
    models.disagree_on = {1, 2}
    with finetuner_otel.instrument(db) as handle:
        with finetuner_otel.shadow("cand", sample=1.0) as shadow:
            _tickets(client, range(6))
            assert shadow.drain()
        stored = rows(handle)
    store = finetuner_otel.open_store(db)
    by_ticket = {
        r["messages"][0]["content"]: r["id"] for r in stored if r["request_model"] == "prod"
    }
    store.correct(by_ticket["ticket 1"], "feature")  # production was wrong on 1: cand right
    report = shadow_report(store, "tickets", "cand")
    assert report.n == 6 and set(report.disagreements) == {by_ticket["ticket 2"]}
    assert report.paired == {"n": 1, "production": 0.0, "candidate": 1.0, "p_value": 1.0}
    assert json.dumps(report.to_dict())  # plain values, for the CLI's JSON
    from .test_cli import run

    which = ("--db", str(db), "--dataset", "tickets", "--candidate", "cand")
    code, out, _ = run("--json", "shadow", "status", *which)
    status = json.loads(out)
    assert code == 0 and status["calls"] == 6 and status["disagreements"] == 1
    assert status["agreement"] == pytest.approx(5 / 6)
    assert status["ci_low"] < status["agreement"] < status["ci_high"]
    code, out, _ = run("--json", "shadow", "review", *which)
    assert code == 0 and by_ticket["ticket 2"] in out


def test_shadow_and_route_need_the_instrumentation_and_check_their_arguments() -> None:
    with pytest.raises(finetuner_otel.ConfigurationError, match="instrument"):
        finetuner_otel.shadow("cand")
    from finetuner_otel._shadow import shadow_from_environment

    assert shadow_from_environment({}) is None
    assert shadow_from_environment(
        {
            "FINETUNER_SHADOW_MODEL": "cand",
            "FINETUNER_SHADOW_DATASETS": "a, b",
            "FINETUNER_SHADOW_SAMPLE": "0.5",
            "FINETUNER_SHADOW_MAX_PER_MINUTE": "10",
        }
    ) == {"candidate_model": "cand", "datasets": ["a", "b"], "sample": 0.5, "max_per_minute": 10}
    with pytest.raises(finetuner_otel.ConfigurationError, match="FINETUNER_SHADOW_SAMPLE"):
        shadow_from_environment({"FINETUNER_SHADOW_MODEL": "c", "FINETUNER_SHADOW_SAMPLE": "x"})


def test_the_environment_starts_a_shadow(
    db: Path, live: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINETUNER_SHADOW_MODEL", "cand")
    monkeypatch.setenv("FINETUNER_SHADOW_SAMPLE", "1")
    with finetuner_otel.instrument(db) as handle:
        _tickets(live.client(max_retries=0), range(3))
        deadline = time.monotonic() + 10
        while len(rows(handle, "request_model = 'cand'")) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(rows(handle, "request_model = 'cand'")) == 3


def test_the_ui_shows_the_live_run_and_links_each_disagreement_to_its_review(
    db: Path, live: OpenAIServer, models: Models
) -> None:
    from starlette.testclient import TestClient

    from finetuner_otel.ui import create_app

    client = live.client(max_retries=0)
    models.disagree_on = {4}
    with finetuner_otel.instrument(db) as handle:
        with finetuner_otel.shadow("cand", sample=1.0) as shadow:
            _tickets(client, range(8))
            assert shadow.drain()
        stored = rows(handle)
    wrong = next(
        r["id"]
        for r in stored
        if r["request_model"] == "prod" and r["messages"][0]["content"] == "ticket 4"
    )
    app = create_app(db, read_only=True)
    with TestClient(app, base_url="http://127.0.0.1") as browser:
        listing = browser.get("/shadow")
        assert listing.status_code == 200 and "cand" in listing.text
        page = browser.get("/shadow", params={"dataset": "tickets", "candidate": "cand"})
        assert page.status_code == 200
        assert "87.5%" in page.text and f'href="/calls/{wrong}"' in page.text
        review = browser.get(f"/calls/{wrong}")
        assert review.status_code == 200
        assert browser.get("/shadow", params={"dataset": "x", "candidate": "y"}).status_code == 404
