"""Importing OpenPipe's dataset export (JSONL: messages, tools, tool_choice, split) and
Langfuse's observations export (JSON array or JSONL of observations), into real stores: the
mapping, provenance, re-runs that add nothing, interrupted runs that resume, bad files, CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from finetuner_otel.cli import main
from finetuner_otel.importers import import_langfuse, import_openpipe
from finetuner_otel.store import Store

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "parameters": {"type": "object", "properties": {"order": {"type": "string"}}},
        },
    }
]


def _openpipe_entry(i: int, split: str = "TRAIN") -> dict[str, Any]:
    """An entry in the shape of OpenPipe's documented export: a tool-call answer."""
    return {
        "messages": [
            {"role": "system", "content": "You route support tickets."},
            {"role": "user", "content": f"Where is order {i}?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "",
                        "type": "function",
                        "function": {"name": "lookup_order", "arguments": f'{{"order":"{i}"}}'},
                    }
                ],
            },
        ],
        "tools": TOOLS,
        "tool_choice": "auto",
        "split": split,
    }


def _write_jsonl(path: Path, entries: list[Any]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
    return path


def _ids(store: Store) -> list[str]:
    return [
        r[0]
        for r in store.sql(
            "SELECT attributes->>'finetuner.import.id' FROM calls ORDER BY started_at"
        ).rows
    ]


# --- OpenPipe ---------------------------------------------------------------------------------


def test_openpipe_export_is_mapped_with_its_provenance(tmp_path: Path, db: Path) -> None:
    entries = [_openpipe_entry(1), _openpipe_entry(2, "TEST")]
    entries.append(
        {
            "messages": [
                {"role": "user", "content": "Thanks!"},
                {"role": "assistant", "content": "You're welcome."},
            ],
            "split": "TRAIN",
        }
    )
    path = _write_jsonl(tmp_path / "openpipe.jsonl", entries)
    store = Store(db)
    summary = import_openpipe(path, store, dataset="routing", progress=False)
    assert (summary.added, summary.skipped, summary.datasets) == (3, 0, {"routing": 3})
    routing = store.get_dataset("routing")
    first = routing[0]
    assert first.messages == entries[0]["messages"][:2]
    assert first.completion["tool_calls"][0]["function"] == {
        "name": "lookup_order",
        "arguments": '{"order":"1"}',
    }
    assert first.tools == TOOLS
    assert routing[2].completion == {"role": "assistant", "content": "You're welcome."}
    call = store.get_call(routing[1].id)
    assert call.source == "import" and call.attributes is not None
    assert call.attributes["finetuner.import.source"] == "openpipe"
    assert call.attributes["finetuner.import.split"] == "TEST"
    assert call.attributes["finetuner.import.line"] == 2
    assert call.attributes["finetuner.import.id"].startswith("sha256:")
    # exported again, the examples are what OpenPipe had
    assert [e.to_openai()["messages"] for e in routing][2] == entries[2]["messages"]


def test_openpipe_rerun_adds_nothing_and_an_interrupted_run_resumes(
    tmp_path: Path, db: Path
) -> None:
    entries = [_openpipe_entry(i) for i in range(250)]  # three batches of up to 100
    path = _write_jsonl(tmp_path / "big.jsonl", entries)
    store = Store(db)

    def stop(batches: int, added: int) -> None:
        if batches == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_openpipe(path, store, progress=False, on_batch=stop, batch=100)
    assert store.sql("SELECT count(*) FROM calls").rows == [(100,)]
    resumed = import_openpipe(path, store, progress=False, batch=100)
    assert (resumed.added, resumed.skipped) == (150, 100)
    again = import_openpipe(path, store, progress=False)
    assert (again.added, again.skipped) == (0, 250)
    ids = _ids(store)
    assert len(ids) == len(set(ids)) == 250
    # the same entry in another export is the same example: stored once
    other = _write_jsonl(tmp_path / "other.jsonl", [entries[7], _openpipe_entry(9999)])
    assert import_openpipe(other, store, progress=False).added == 1


def test_a_batch_of_large_entries_is_written_in_pieces(tmp_path: Path, db: Path) -> None:
    """60 entries of 40 KB (2.4 MB, one batch): stored a few hundred KB at a time, since the
    store ingests each spool file in bounded memory."""
    entries = [_openpipe_entry(i) for i in range(60)]
    for i, entry in enumerate(entries):
        entry["messages"][1]["content"] = f"ticket {i}: " + "the parcel never came. " * 1800
    path = _write_jsonl(tmp_path / "large.jsonl", entries)
    store = Store(db)
    assert import_openpipe(path, store, progress=False).added == 60
    stored = store.get_dataset("default")
    assert [e.messages[1]["content"] for e in stored] == [
        e["messages"][1]["content"] for e in entries
    ]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "line 2 is not JSON"),
        ('{"input": "hi"}', "needs 'messages'"),
        ('{"messages": [{"role": "user", "content": "hi"}]}', "the assistant's answer"),
    ],
)
def test_openpipe_bad_entry_imports_nothing(
    tmp_path: Path, db: Path, line: str, problem: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(_openpipe_entry(1)) + "\n" + line + "\n", encoding="utf-8")
    store = Store(db)
    with pytest.raises(ValueError, match=problem):
        import_openpipe(path, store, progress=False)
    assert not store.path.exists() or store.sql("SELECT count(*) FROM calls").rows == [(0,)]


def test_missing_or_csv_file_says_what_to_do(tmp_path: Path, db: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        import_langfuse(tmp_path / "nope.json", Store(db), progress=False)
    csv = tmp_path / "export.csv"
    csv.write_text("id,type,input,output\nobs-1,GENERATION,hi,hello\n", encoding="utf-8")
    with pytest.raises(ValueError, match="export as JSON or JSONL"):
        import_langfuse(csv, Store(db), progress=False)


# --- Langfuse ---------------------------------------------------------------------------------


def _observation(i: int, **fields: Any) -> dict[str, Any]:
    """An observation in the shape of Langfuse's batch export (camelCase fields)."""
    observation = {
        "id": f"obs-{i}",
        "traceId": f"trace-{i}",
        "projectId": "proj-1",
        "type": "GENERATION",
        "name": "OpenAI-generation",
        "startTime": "2026-10-01T12:00:00.000Z",
        "endTime": "2026-10-01T12:00:01.200Z",
        "model": "gpt-4o-mini-2024-07-18",
        "modelParameters": {"temperature": 0},
        "input": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": f"question {i}"},
        ],
        "output": {"role": "assistant", "content": f"answer {i}"},
        "metadata": {"app": "faq"},
        "usageDetails": {"input": 12, "output": 3, "total": 15},
        "level": "DEFAULT",
        "traceName": "faq",
        "scores": {},
        "comments": [],
    }
    observation.update(fields)
    return observation


def test_langfuse_generations_are_mapped(tmp_path: Path, db: Path) -> None:
    observations = [
        _observation(1),
        _observation(2, metadata={"dataset_name": "billing"}),
        _observation(3, type="SPAN", input={"query": "x"}, output=None),  # not a call
        _observation(4, input="Translate 'cat' to French.", output="chat"),
        _observation(
            5,
            input={"messages": [{"role": "user", "content": "order 7?"}], "tools": TOOLS},
            output={
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup_order", "arguments": '{"order":"7"}'},
                    }
                ],
            },
        ),
    ]
    path = tmp_path / "observations.json"
    path.write_text(json.dumps(observations), encoding="utf-8")  # the JSON export: an array
    store = Store(db)
    summary = import_langfuse(path, store, dataset="faq", progress=False)
    assert (summary.added, summary.datasets) == (4, {"faq": 3, "billing": 1})
    faq = store.get_dataset("faq")
    assert faq[0].messages == observations[0]["input"]
    assert faq[0].completion == {"role": "assistant", "content": "answer 1"}
    assert faq[0].model == "gpt-4o-mini-2024-07-18"
    assert faq[1].messages == [{"role": "user", "content": "Translate 'cat' to French."}]
    assert faq[1].completion["content"] == "chat"
    assert faq[2].tools == TOOLS and faq[2].completion["tool_calls"][0]["id"] == "call_1"
    call = store.get_call(store.get_dataset("billing")[0].id)
    assert call.source == "import" and call.attributes is not None
    assert call.attributes["finetuner.import.source"] == "langfuse"
    assert call.attributes["finetuner.import.id"] == "obs-2"
    assert call.attributes["finetuner.import.trace_id"] == "trace-2"
    assert call.attributes["finetuner.import.metadata"] == {"dataset_name": "billing"}


def test_langfuse_jsonl_rerun_and_resume(tmp_path: Path, db: Path) -> None:
    path = _write_jsonl(tmp_path / "obs.jsonl", [_observation(i) for i in range(120)])
    store = Store(db)

    def stop(batches: int, added: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_langfuse(path, store, progress=False, on_batch=stop, batch=100)
    assert len(_ids(store)) == 100
    assert import_langfuse(path, store, progress=False).added == 20
    assert import_langfuse(path, store, progress=False).added == 0
    assert sorted(_ids(store)) == sorted(f"obs-{i}" for i in range(120))
    with pytest.raises(ValueError, match="batch must be"):
        import_langfuse(path, store, progress=False, batch=0)


def test_langfuse_generation_without_a_chat_imports_nothing(tmp_path: Path, db: Path) -> None:
    path = tmp_path / "obs.json"
    path.write_text(json.dumps([_observation(1), _observation(2, output=42)]), encoding="utf-8")
    with pytest.raises(ValueError, match="entry 2: generation obs-2: its output is not an answer"):
        import_langfuse(path, Store(db), progress=False)


def test_cli_imports_files(tmp_path: Path, db: Path) -> None:
    openpipe = _write_jsonl(tmp_path / "op.jsonl", [_openpipe_entry(1), _openpipe_entry(2)])
    langfuse = _write_jsonl(tmp_path / "lf.jsonl", [_observation(1)])
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["import", "openpipe", str(openpipe), "--db", str(db), "--dataset", "op", "--json"],
        out=out,
        err=err,
    )
    assert code == 0 and json.loads(out.getvalue())["datasets"] == {"op": 2}
    assert "openpipe op.jsonl" in err.getvalue()  # the progress, on stderr
    out = io.StringIO()
    assert main(["import", "langfuse", str(langfuse), "--db", str(db)], out=out) == 0
    assert "added" in out.getvalue() and "default" in out.getvalue()
    err = io.StringIO()
    assert main(["import", "langfuse", str(tmp_path / "x.json"), "--db", str(db)], err=err) == 1
    assert "does not exist" in err.getvalue()
