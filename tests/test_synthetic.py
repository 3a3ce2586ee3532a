"""Synthetic data (generate, label) and chain-of-thought mode, against the local server."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

import finetuner_otel
from finetuner_otel import Prompt
from finetuner_otel.cli import main
from finetuner_otel.eval import ExactMatch
from finetuner_otel.synthetic import generate, label, near_duplicate
from finetuner_otel.testing import OpenAIServer, RecordedRequest, Reply

from .conftest import rows

SEED_QUERIES = {
    "best pizza dough": "food",
    "cheap flights to rome": "travel",
    "fix gpu drivers": "tech",
}
WRITTEN = [
    "Best pizza dough!",  # a near-duplicate of a seed input: dropped
    "vegan ramen near me",
    "train tickets to vienna",
    "Vegan ramen near me.",  # a near-duplicate of another new input: dropped
    "laptop fan too loud",
]


def _capture(server: OpenAIServer) -> None:
    client = server.client()
    for query, label_ in SEED_QUERIES.items():
        server.enqueue(Reply(label_))
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "system", "content": "Label the query."},
                {"role": "user", "content": query},
            ],
            dataset_name="queries",
        )


def _scripted(request: RecordedRequest) -> Reply:
    body = request.json
    if body.get("response_format") == {"type": "json_object"}:  # the writer
        return Reply(json.dumps({"inputs": WRITTEN}))
    query = body["messages"][-1]["content"].lower()
    return Reply("food" if "ramen" in query else "travel" if "tickets" in query else "tech")


def test_near_duplicates() -> None:
    assert near_duplicate("Best  Pizza dough!", ["best pizza dough"])
    assert not near_duplicate("vegan ramen near me", ["best pizza dough"])
    assert near_duplicate("x", ["x"], threshold=1.0)


def test_generate_drops_near_duplicates_tags_and_answers(capture, server: OpenAIServer) -> None:
    _capture(server)
    store = capture.open_store()
    queries = store.get_dataset("queries")
    server.responder = _scripted
    made = generate(queries, 3, client=server.client(), model="writer", teacher_model="teacher")
    assert [e.messages[-1]["content"] for e in made] == [
        "vegan ramen near me",
        "train tickets to vienna",
        "laptop fan too loud",
    ]
    assert [e.completion["content"] for e in made] == ["food", "travel", "tech"]
    assert made[0].messages[0] == {"role": "system", "content": "Label the query."}
    # the writer saw the seed examples
    prompt = next(r.json for r in server.requests if r.json.get("response_format"))
    assert all(json.dumps(q) in prompt["messages"][0]["content"] for q in SEED_QUERIES)
    # tagged, with their seeds, and easy to leave out
    synthetic = rows(capture, "source = 'synthetic'")
    assert len(synthetic) == 3 and {r["request_model"] for r in synthetic} == {"teacher"}
    seeds = json.loads(synthetic[0]["attributes"]["finetuner.synthetic.seeds"])
    assert set(seeds) == {e.id for e in queries}
    assert synthetic[0]["attributes"]["finetuner.synthetic.model"] == "writer"
    assert len(store.get_dataset("queries")) == 6
    assert len(store.get_dataset("queries", where="source <> 'synthetic'")) == 3
    # the calls made to write and answer them are tooling, never examples
    tooling = rows(capture, "dataset = 'synthetic'")
    assert tooling and not any(r["trainable"] for r in tooling)


def test_label_distils_inputs_into_a_dataset(capture, server: OpenAIServer) -> None:
    server.responder = _scripted
    made = label(
        ["ramen recipes", [{"role": "user", "content": "train tickets please"}]],
        client=server.client(),
        teacher_model="teacher",
        dataset="distilled",
        store=capture.open_store(),
        system="Label the query.",
    )
    assert [e.to_openai() for e in made] == [
        {
            "messages": [
                {"role": "system", "content": "Label the query."},
                {"role": "user", "content": "ramen recipes"},
                {"role": "assistant", "content": "food"},
            ]
        },
        {
            "messages": [
                {"role": "system", "content": "Label the query."},
                {"role": "user", "content": "train tickets please"},
                {"role": "assistant", "content": "travel"},
            ]
        },
    ]
    assert {r["source"] for r in rows(capture, "dataset = 'distilled'")} == {"synthetic"}
    with pytest.raises(finetuner_otel.ConfigurationError, match="at least one input"):
        label(
            [], client=server.client(), teacher_model="t", dataset="d", store=capture.open_store()
        )


def test_the_cli_generates(capture, server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    _capture(server)
    assert capture.flush()
    server.responder = _scripted
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    out = io.StringIO()
    code = main(
        [
            "--db",
            str(capture.db_path),
            "--json",
            "datasets",
            "generate",
            "queries",
            "-n",
            "2",
            "--model",
            "writer",
            "--into",
            "more",
        ],
        out=out,
        err=io.StringIO(),
    )
    assert code == 0
    assert [r["answer"] for r in json.loads(out.getvalue())] == ["food", "travel"]


COT = Prompt(
    "labeller",
    [{"role": "system", "content": "Label the query."}, {"role": "user", "content": "{{query}}"}],
    chain_of_thought=True,
)


def test_chain_of_thought_keeps_reasoning_and_answer_apart(
    capture, server: OpenAIServer, tmp_path: Path
) -> None:
    plain = Prompt(
        "labeller",
        [
            {"role": "system", "content": "Label the query."},
            {"role": "user", "content": "{{query}}"},
        ],
    )
    assert COT.version != plain.version  # the instruction is part of the template
    assert "<reasoning>" in COT.template[0]["content"]
    reply = "<reasoning>\nRamen is a dish.\nSo: food.\n</reasoning>\n<answer>food</answer>"
    server.enqueue(Reply(reply), Reply("travel"))
    client = server.client()
    client.chat.completions.create(
        model="m", messages=COT.messages(query="ramen"), dataset_name="cot"
    )
    client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "tickets"}], dataset_name="cot"
    )
    [first, second] = rows(capture)
    assert (first["rationale"], first["answer"]) == ("Ramen is a dish.\nSo: food.", "food")
    assert (second["rationale"], second["answer"]) == (None, "travel")
    assert first["completion"]["content"] == reply  # stored whole

    dataset = capture.open_store().get_dataset("cot")
    full = [
        json.loads(x) for x in dataset.to_jsonl(tmp_path / "full.jsonl").read_text().splitlines()
    ]
    short = [
        json.loads(x)
        for x in dataset.to_jsonl(tmp_path / "a.jsonl", rationale=False).read_text().splitlines()
    ]
    assert full[0]["messages"][-1]["content"] == reply
    assert short[0]["messages"][-1]["content"] == "food"
    assert full[0]["messages"][:-1] == short[0]["messages"][:-1] and full[1] == short[1]

    # an eval compares the final answer only
    server.responder = lambda request: Reply(
        "<reasoning>anything at all</reasoning><answer>food</answer>"
    )
    result = ExactMatch(client, progress=False, backoff=0).run("m", dataset.head(1))
    assert result.accuracy == 1.0 and result.results[0].prediction == "food"
    assert result.results[0].target == "food"
