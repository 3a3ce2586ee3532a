"""Exports (OpenAI JSONL, Parquet, CSV, Arrow, pandas, polars, Hugging Face), import from
OpenAI JSONL, and the snapshot every export leaves in the store."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

import finetuner_otel
from finetuner_otel import Store
from finetuner_otel.testing import OpenAIServer, Reply, ToolCall

from .conftest import rows

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Find a thing",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
]


def _capture_variety(server: OpenAIServer) -> None:
    """Plain text, a system prompt, tools and tool calls, tool results, an image, a name."""
    client = server.client()
    server.enqueue(Reply("Paris"))
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": "Capital of France?", "name": "ann"},
        ],
        dataset_name="src",
    )
    server.enqueue(Reply(tool_calls=[ToolCall("lookup", {"q": "x"})]))
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "look up x"}],
        tools=TOOLS,
        dataset_name="src",
    )
    server.enqueue(Reply("It is 42."))
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "user", "content": "look up x"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"q":"x"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        ],
        tools=TOOLS,
        dataset_name="src",
    )
    server.enqueue(Reply("A cat."))
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}},
                ],
            }
        ],
        dataset_name="src",
    )


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_import_export_is_byte_identical(
    capture, server: OpenAIServer, tmp_path: Path
) -> None:
    _capture_variety(server)
    store = capture.open_store()
    first = store.get_dataset("src").to_jsonl(tmp_path / "a.jsonl")
    assert first.examples == 4
    result = store.import_jsonl(first, "copy", model="gpt-4o-mini")
    assert (result.dataset, result.examples, result.added) == ("copy", 4, 4)
    second = store.get_dataset("copy").to_jsonl(tmp_path / "b.jsonl")
    assert second.read_bytes() == first.read_bytes()
    assert second.sha256 == first.sha256 == _sha(first)
    # imported examples are calls like any other, marked with where they came from
    imported = rows(capture, "dataset = 'copy'")
    assert {r["request_model"] for r in imported} == {"gpt-4o-mini"}
    assert {r["scope_name"] for r in imported} == {"finetuner_otel.import"}
    assert [r["attributes"]["finetuner.import.line"] for r in imported] == [1, 2, 3, 4]
    # importing the same file into the same dataset again adds nothing
    again = store.import_jsonl(first, "copy")
    assert again.added == 0
    assert len(store.get_dataset("copy")) == 4


def test_weights_survive_import_and_export(db: Path, tmp_path: Path) -> None:
    records = [
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "u1"},
                {"role": "assistant", "content": "a1", "weight": 0},
                {"role": "user", "content": "u2"},
                {"role": "assistant", "content": "a2", "weight": 1},
            ]
        },
        {"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]},
    ]
    source = tmp_path / "weighted.jsonl"
    source.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
    store = Store(db)
    store.import_jsonl(source, "w")
    exported = store.get_dataset("w").to_jsonl(tmp_path / "out.jsonl")
    assert exported.read_bytes() == source.read_bytes()
    assert store.get_dataset("w").validate().ok


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"messages": [{"role": "user", "content": "u"}]}'], "example_missing_assistant"),
        (
            [
                '{"messages": [{"role": "user", "content": "u"}, '
                '{"role": "assistant", "content": "a"}, {"role": "user", "content": "u"}]}'
            ],
            "last message of every example must be the assistant",
        ),
        (['{"messages": [{"role": "bot", "content": "u"}]}'], "unrecognized_role"),
        (["not json"], "line 2: not JSON"),
    ],
)
def test_a_bad_file_imports_nothing(
    capture, server: OpenAIServer, tmp_path: Path, lines: list[str], message: str
) -> None:
    _capture_variety(server)
    store = capture.open_store()
    before = store.list_datasets()
    good = '{"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]}'
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([good, *lines]) + "\n")
    with pytest.raises(finetuner_otel.ConfigurationError, match=message):
        store.import_jsonl(path, "src")
    assert store.list_datasets() == before  # nothing added, nothing lost


def test_every_export_is_recorded_as_a_snapshot(
    capture, server: OpenAIServer, tmp_path: Path
) -> None:
    _capture_variety(server)
    store = capture.open_store()
    ids = [r["id"] for r in rows(capture)]
    train, val = store.get_dataset("src").split(0.5, seed=1)
    export = train.to_jsonl(tmp_path / "train.jsonl")
    [snapshot] = store.snapshots()
    assert snapshot.id == export.snapshot == export.sha256 == _sha(export)
    assert (snapshot.dataset, snapshot.format, snapshot.examples) == (
        "src[train]",
        "openai_chat",
        len(train),
    )
    assert snapshot.path == str(export.resolve())
    # which calls went in, in order: plain SQL too
    went_in = store.sql(
        "SELECT call_id FROM snapshot_calls WHERE snapshot_id = ? ORDER BY position",
        [export.sha256],
    )
    assert [r[0] for r in went_in] == [e.id for e in train]
    assert set(ids) >= {e.id for e in train}
    again = store.get_snapshot(export.sha256[:10])
    assert [e.id for e in again] == [e.id for e in train]
    assert again.to_jsonl(tmp_path / "again.jsonl").sha256 == export.sha256
    assert len(store.snapshots()) == 1  # same content, same snapshot

    val.to_parquet(tmp_path / "val.parquet")
    assert [s.format for s in store.snapshots("src")] == ["openai_chat", "parquet"]
    with pytest.raises(finetuner_otel.ConfigurationError, match="names no snapshot"):
        store.get_snapshot("00000000")
    with pytest.raises(finetuner_otel.ConfigurationError, match="8 or more"):
        store.get_snapshot(export.sha256[:4])


def test_a_dataset_not_from_a_store_exports_without_a_snapshot(tmp_path: Path) -> None:
    example = finetuner_otel.Example(
        id="x",
        dataset="mine",
        messages=[{"role": "user", "content": "u"}],
        completion={"role": "assistant", "content": "a"},
    )
    export = finetuner_otel.Dataset("mine", [example]).to_jsonl(tmp_path / "m.jsonl")
    assert export.snapshot is None and export.examples == 1
    assert json.loads(export.read_text()) == {
        "messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]
    }


def _columns_and_first(table: Any) -> tuple[list[str], dict[str, Any]]:
    return list(table.columns), {k: v[0] for k, v in table.to_pydict().items()}


def test_table_exports(capture, server: OpenAIServer, tmp_path: Path) -> None:
    _capture_variety(server)
    dataset = capture.open_store().get_dataset("src")
    columns = ["id", "dataset", "model", "created_at", "messages", "completion", "tools"]
    expected = [(e.id, json.dumps(e.messages), json.dumps(e.completion)) for e in dataset]

    def check(relation: Any) -> None:
        got = duckdb.sql(
            "SELECT id, messages, completion, tools FROM relation ORDER BY created_at, id"
        ).fetchall()
        assert [(r[0], json.loads(r[1]), json.loads(r[2])) for r in got] == [
            (i, json.loads(m), json.loads(c)) for i, m, c in expected
        ]
        assert [json.loads(r[3]) if r[3] else None for r in got] == [e.tools for e in dataset]

    parquet = dataset.to_parquet(tmp_path / "x.parquet")
    check(duckdb.read_parquet(str(parquet)))
    assert duckdb.read_parquet(str(parquet)).columns == columns
    csv = dataset.to_csv(tmp_path / "x.csv")
    check(duckdb.read_csv(str(csv)))
    arrow = dataset.to_arrow()
    assert arrow.column_names == columns and arrow.num_rows == 4
    check(arrow)
    frame = dataset.to_pandas()
    assert list(frame.columns) == columns
    check(frame)
    polars_frame = dataset.to_polars()
    assert polars_frame.columns == columns
    check(polars_frame)

    hf = dataset.to_hf()
    assert hf.num_rows == 4 and hf.column_names == ["messages", "tools"]
    # issue 20: only the message with an image keeps parts (HF's), every other content is a string
    assert hf[0]["messages"][-1]["content"] == "Paris"
    assert hf[3]["messages"][0]["content"][1] == {"type": "image", "url": "https://x.test/cat.png"}
    assert json.loads(hf[1]["tools"]) == dataset[1].tools


def test_a_missing_optional_package_is_named(
    capture, server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _capture_variety(server)
    dataset = capture.open_store().get_dataset("src")
    monkeypatch.setitem(sys.modules, "polars", None)
    with pytest.raises(finetuner_otel.ConfigurationError, match=r"pip install polars"):
        dataset.to_polars()
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(finetuner_otel.ConfigurationError, match=r"finetuner-otel\[hf\]"):
        dataset.to_hf()


def test_history_weight_trains_on_the_completion_only(
    capture, server: OpenAIServer, tmp_path: Path
) -> None:
    server.enqueue(Reply("fine, thanks"))
    history = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "how are you?"},
    ]
    server.client().chat.completions.create(model="m", messages=history, dataset_name="chat")
    dataset = capture.open_store().get_dataset("chat")
    [line] = dataset.to_jsonl(tmp_path / "w.jsonl", history_weight=0).read_text().splitlines()
    assert json.loads(line)["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello", "weight": 0},
        {"role": "user", "content": "how are you?"},
        {"role": "assistant", "content": "fine, thanks"},
    ]
    assert finetuner_otel.validate_jsonl(tmp_path / "w.jsonl").ok
    with pytest.raises(finetuner_otel.ConfigurationError, match="history_weight is 0 or 1"):
        dataset.to_jsonl(tmp_path / "x.jsonl", history_weight=2)
