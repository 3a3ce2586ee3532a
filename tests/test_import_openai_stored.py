"""Importing OpenAI's stored chat completions: the local server's list and messages endpoints
in their documented wire format, the real openai SDK paging them, the mapping into calls,
re-runs that add nothing, interrupted runs that resume, rate limits, filters and the CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import openai
import pytest

from finetuner_otel.cli import main
from finetuner_otel.importers import import_openai_stored
from finetuner_otel.store import Store
from finetuner_otel.testing import OpenAIServer

TOOL_ANSWER = {
    "tool_calls": [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "refund", "arguments": '{"order": "4411"}'},
        }
    ]
}


def _seed(server: OpenAIServer, n: int) -> list[str]:
    """``n`` stored completions; every 3rd names dataset "billing" in its metadata."""
    api = server.stored_completions
    ids = []
    for i in range(n):
        metadata = {"app": "support", **({"dataset_name": "billing"} if i % 3 == 0 else {})}
        messages = [
            {"role": "system", "content": "You are Acme's support agent."},
            {"role": "user", "content": f"ticket {i}: where is my order?"},
        ]
        ids.append(api.add(messages, f"answer {i}", metadata=metadata))
    return ids


def _list_queries(server: OpenAIServer) -> list[dict[str, list[str]]]:
    """The query of every list request the server answered (not the messages ones)."""
    return [
        parse_qs(urlsplit(path).query)
        for path in server.stored_completions.requests
        if urlsplit(path).path.rstrip("/") == "/v1/chat/completions"
    ]


def _imported(store: Store) -> list[str]:
    return [
        r[0]
        for r in store.sql(
            "SELECT attributes->>'finetuner.import.id' FROM calls "
            "ORDER BY CAST(attributes->>'finetuner.import.created' AS BIGINT), started_at"
        ).rows
    ]


# --- the local server speaks the documented wire format ---------------------------------------


def test_server_lists_pages_in_the_documented_shape(server: OpenAIServer) -> None:
    ids = _seed(server, 5)
    client = server.client()
    page = client.chat.completions.list(limit=2)
    assert [c.id for c in page.data] == ids[:2] and page.has_more is True
    raw = client.chat.completions.with_raw_response.list(limit=2, after=ids[3]).http_response
    body = raw.json()
    assert body["object"] == "list" and body["has_more"] is False
    assert (body["first_id"], body["last_id"]) == (ids[4], ids[4])
    assert body["data"][0]["object"] == "chat.completion" and "metadata" in body["data"][0]
    # the SDK's own auto-paging follows has_more and the last id
    assert [c.id for c in client.chat.completions.list(limit=2)] == ids
    assert [c.id for c in client.chat.completions.list(order="desc", limit=10)] == ids[::-1]
    billing = client.chat.completions.list(metadata={"dataset_name": "billing"}, limit=100)
    assert [c.id for c in billing.data] == [ids[0], ids[3]]
    assert client.chat.completions.retrieve(ids[1]).choices[0].message.content == "answer 1"
    messages = client.chat.completions.messages.list(ids[1], limit=1)
    assert [m.id for m in messages.data] == [f"{ids[1]}-0"] and messages.has_more
    assert [m.role for m in messages] == ["system", "user"]  # every page
    with pytest.raises(openai.BadRequestError, match="limit"):
        client.chat.completions.list(limit=101)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.messages.list("chatcmpl-nope")


# --- the import -------------------------------------------------------------------------------


def test_import_maps_every_page_into_calls(server: OpenAIServer, db: Path) -> None:
    ids = _seed(server, 230)  # 3 pages of 100
    api = server.stored_completions
    tool = api.add(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "refund order 4411"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/box.jpg"}},
                ],
            },
        ],
        TOOL_ANSWER,
        metadata={"app": "support", "dataset": "refunds"},
        finish_reason="tool_calls",
    )
    store = Store(db)
    progress = io.StringIO()
    summary = import_openai_stored(server.client(), store, progress=progress)
    assert (summary.added, summary.skipped, summary.pages) == (231, 0, 3)
    assert summary.datasets == {"billing": 77, "default": 153, "refunds": 1}
    assert "231 added" in progress.getvalue()
    # paged as documented: oldest first, 100 a page, each page after the last id of the one before
    queries = _list_queries(server)
    assert [q.get("after") for q in queries] == [None, [ids[99]], [ids[199]]]
    assert all(q["limit"] == ["100"] and q["order"] == ["asc"] for q in queries)
    assert _imported(store) == [*ids, tool]

    first = store.get_dataset("billing")[0]
    assert first.messages == [
        {"role": "system", "content": "You are Acme's support agent."},
        {"role": "user", "content": "ticket 0: where is my order?"},
    ]
    assert first.completion == {"role": "assistant", "content": "answer 0"}
    assert first.model == "gpt-4o-mini-2024-07-18"
    [refund] = store.get_dataset("refunds")
    # the stored message's content parts, not only its text, as a captured call keeps them
    [asked] = refund.messages
    assert asked["role"] == "user" and isinstance(asked["content"], list)
    assert asked["content"][0] == {"type": "text", "text": "refund order 4411"}
    assert "https://example.com/box.jpg" in json.dumps(asked["content"][1])
    assert refund.completion["tool_calls"][0]["function"]["name"] == "refund"
    call = store.get_call(refund.id)
    assert call.source == "import" and call.attributes is not None
    assert call.attributes["finetuner.import.source"] == "openai-stored"
    assert call.attributes["finetuner.import.id"] == tool
    assert call.attributes["finetuner.import.metadata"] == {"app": "support", "dataset": "refunds"}
    assert call.attributes["finetuner.import.finish_reason"] == "tool_calls"


def test_an_answer_cut_off_is_stored_but_is_no_training_example(
    server: OpenAIServer, db: Path
) -> None:
    api = server.stored_completions
    whole = api.add([{"role": "user", "content": "say it all"}], "all of it", finish_reason="stop")
    cut = api.add([{"role": "user", "content": "say more"}], "and then th", finish_reason="length")
    store = Store(db)
    import_openai_stored(server.client(), store, progress=False)
    assert [e.completion["content"] for e in store.get_dataset("default")] == ["all of it"]
    rows = store.sql(
        "SELECT attributes->>'finetuner.import.id', trainable, untrainable_reason FROM calls "
        "ORDER BY started_at"
    ).rows
    assert [(r[0], r[1]) for r in rows] == [(whole, True), (cut, False)]
    assert "token limit" in rows[1][2]
    again = import_openai_stored(server.client(), store, progress=False)
    assert again.added == 0  # stored, so not fetched again


def test_a_rerun_adds_nothing(server: OpenAIServer, db: Path) -> None:
    _seed(server, 25)
    store = Store(db)
    assert import_openai_stored(server.client(), store, page_size=10, progress=False).added == 25
    again = import_openai_stored(server.client(), store, page_size=10, progress=False)
    assert again.added == 0 and store.sql("SELECT count(*) FROM calls").rows == [(25,)]
    # the re-run started at the last page it had stored, not at the first
    assert _list_queries(server)[-1].get("after") is not None
    # new completions since are what the next run adds
    new = _seed(server, 3)
    assert import_openai_stored(server.client(), store, page_size=10, progress=False).added == 3
    assert _imported(store)[-3:] == new


def test_a_server_failing_mid_import_is_resumed(server: OpenAIServer, db: Path) -> None:
    ids = _seed(server, 35)
    store = Store(db)
    client = server.client(max_retries=0)
    server.stored_completions.fail_after_pages(2)  # the third page fails, for real
    with pytest.raises(openai.InternalServerError):
        import_openai_stored(client, store, page_size=10, retries=1, backoff=0.01, progress=False)
    assert _imported(store) == ids[:20]  # the pages read before it are stored
    server.stored_completions.fail_after_pages(None)
    before = len(server.stored_completions.requests)
    summary = import_openai_stored(client, store, page_size=10, progress=False)
    # it resumed at the page it was in: after the last id of the first page
    resumed = [
        parse_qs(urlsplit(p).query)
        for p in server.stored_completions.requests[before:]
        if urlsplit(p).path.rstrip("/") == "/v1/chat/completions"
    ]
    assert resumed[0]["after"] == [ids[9]]
    assert (summary.added, summary.skipped) == (15, 10)
    assert _imported(store) == ids  # each once, in order


def test_an_interrupt_from_the_page_callback_is_resumed(server: OpenAIServer, db: Path) -> None:
    ids = _seed(server, 25)
    store = Store(db)

    def stop_after_first(pages: int, added: int) -> None:
        if pages == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_openai_stored(
            server.client(), store, page_size=10, progress=False, on_page=stop_after_first
        )
    assert len(_imported(store)) == 10
    assert import_openai_stored(server.client(), store, page_size=10, progress=False).added == 15
    assert _imported(store) == ids


def test_rate_limits_are_retried_with_backoff(server: OpenAIServer, db: Path) -> None:
    _seed(server, 5)
    store = Store(db)
    api = server.stored_completions
    # two 429s: the SDK's one retry takes the first, our backoff the second
    api.fail_next(429, 429, retry_after=0.01)
    progress = io.StringIO()
    summary = import_openai_stored(server.client(max_retries=1), store, progress=progress)
    assert summary.added == 5
    assert "RateLimitError; trying again" in progress.getvalue()
    assert len(_list_queries(server)) == 3  # two refused, one answered
    # a server that keeps refusing: the SDK's error, once our retries are spent
    api.fail_next(429, 429, 429)
    with pytest.raises(openai.RateLimitError):
        import_openai_stored(
            server.client(max_retries=0), store, retries=2, backoff=0.01, progress=False
        )
    assert store.sql("SELECT count(*) FROM calls").rows == [(5,)]


def test_filters_metadata_model_and_since(server: OpenAIServer, db: Path) -> None:
    api = server.stored_completions
    old = api.add([{"role": "user", "content": "old"}], "a", metadata={"app": "x"}, created=100)
    mini = api.add([{"role": "user", "content": "q1"}], "a", metadata={"app": "x"}, created=200)
    api.add([{"role": "user", "content": "q2"}], "a", metadata={"app": "y"}, created=300)
    big = api.add(
        [{"role": "user", "content": "q3"}], "a", model="gpt-4o", metadata={"app": "x"}, created=400
    )
    store = Store(db)
    summary = import_openai_stored(
        server.client(), store, metadata={"app": "x"}, since=150, dataset="x", progress=False
    )
    assert (summary.added, summary.skipped, summary.datasets) == (2, 1, {"x": 2})
    assert _imported(store) == [mini, big]
    assert _list_queries(server)[0]["metadata[app]"] == ["x"]
    assert old not in _imported(store)  # listed, but older than --since: never fetched
    assert not any(old in path for path in api.requests if path.endswith("/messages"))
    other = Store(db.with_name("other.duckdb"))
    summary = import_openai_stored(server.client(), other, model="gpt-4o", progress=False)
    assert summary.added == 1 and _list_queries(server)[-1]["model"] == ["gpt-4o"]


def test_bad_sizes_are_refused(server: OpenAIServer, db: Path) -> None:
    with pytest.raises(ValueError, match="page_size is 1 to 100"):
        import_openai_stored(server.client(), Store(db), page_size=500, progress=False)
    with pytest.raises(ValueError, match="concurrency must be"):
        import_openai_stored(server.client(), Store(db), concurrency=0, progress=False)
    with pytest.raises(ValueError, match="dataset is empty"):
        import_openai_stored(server.client(), Store(db), dataset="", progress=False)


def test_dataset_from_metadata_then_option_then_default(server: OpenAIServer, db: Path) -> None:
    api = server.stored_completions
    api.add(
        [{"role": "user", "content": "a"}], "x", metadata={"dataset": "one", "dataset_name": "two"}
    )
    api.add([{"role": "user", "content": "b"}], "x", metadata={"dataset_name": "two"})
    api.add([{"role": "user", "content": "c"}], "x", metadata={"dataset_name": " "})
    api.add([{"role": "user", "content": "d"}], "x")
    store = Store(db)
    summary = import_openai_stored(server.client(), store, dataset="fallback", progress=False)
    assert summary.datasets == {"one": 1, "two": 1, "fallback": 2}
    [refused] = store.sql(
        "SELECT attributes->>'finetuner.import.dataset_refused' FROM calls "
        "WHERE attributes->>'finetuner.import.dataset_refused' IS NOT NULL"
    ).rows
    assert "empty" in refused[0]
    with pytest.raises(ValueError, match="metadata filters are text"):
        import_openai_stored(server.client(), store, metadata={"n": 1}, progress=False)  # type: ignore[dict-item]


def test_cli_import_openai_stored(
    server: OpenAIServer, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(server, 4)
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    argv = ["import", "openai-stored", "--db", str(db), "--metadata", "app=support"]
    out, err = io.StringIO(), io.StringIO()
    assert main([*argv, "--dataset", "tickets", "--json"], out=out, err=err) == 0
    result = json.loads(out.getvalue())
    assert result["added"] == 4 and result["datasets"] == {"billing": 2, "tickets": 2}
    assert "openai stored completions" in err.getvalue()  # the progress, on stderr
    out = io.StringIO()
    assert main([*argv, "--since", "2099-01-01", "--json"], out=out, err=io.StringIO()) == 0
    assert json.loads(out.getvalue())["added"] == 0
    err = io.StringIO()
    assert main([*argv, "--metadata", "nokey"], out=io.StringIO(), err=err) == 1
    assert "--metadata takes key=value" in err.getvalue()
    err = io.StringIO()
    assert main([*argv, "--since", "yesterday"], out=io.StringIO(), err=err) == 1
    assert "--since takes a date" in err.getvalue()
