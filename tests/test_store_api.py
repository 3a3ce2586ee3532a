"""The store's public API the other packages use: get_call, add_examples, schema_status."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import finetuner_otel
from finetuner_otel import CallNotFoundError, ConfigurationError, Store
from finetuner_otel.store import Call
from finetuner_otel.testing import OpenAIServer, Reply

from .conftest import rows

_PAIR = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]


def test_get_call_is_the_calls_view_with_its_latest_review(capture, server: OpenAIServer) -> None:
    server.enqueue(Reply("<reasoning>add</reasoning><answer>4</answer>"))
    server.client().chat.completions.create(
        model="m", messages=[{"role": "user", "content": "2+2?"}], dataset_name="api"
    )
    [row] = rows(capture)
    store = capture.open_store()
    call = store.get_call(row["id"])
    assert isinstance(call, Call)
    for name, value in call.to_dict().items():
        if name not in ("verdict", "correction"):
            assert value == row[name], name
    assert (call.verdict, call.correction) == (None, None)
    assert (call.rationale, call.answer, call.source) == ("add", "4", "captured")
    assert call.messages == [{"role": "user", "content": "2+2?"}]

    store.reject(call.id)
    store.correct(call.id, "four")
    reviewed = store.get_call(call.id)
    assert reviewed.verdict == "reject"
    assert reviewed.correction == {"role": "assistant", "content": "four"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        reviewed.status = "error"  # type: ignore[misc]


def test_get_call_names_the_fix_when_there_is_no_such_call(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    with pytest.raises(CallNotFoundError, match=r"no call with id .nope.*calls list"):
        store.get_call("nope")  # no store yet
    store.add_examples([{"messages": _PAIR}], dataset="d")
    with pytest.raises(CallNotFoundError, match=r"ids are in calls\.id"):
        store.get_call("nope")
    with pytest.raises(ConfigurationError, match="call id"):
        store.get_call("")


def test_add_examples_stores_records_as_calls_of_a_dataset(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    records = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
        for i in range(3)
    ]
    added = store.add_examples(
        records,
        dataset="made",
        scope="my_tool",
        model="gpt-4o-mini",
        attributes=[{"finetuner.source": "synthetic", "n": i} for i in range(3)],
    )
    assert [e.to_openai() for e in added] == records  # in order, as given
    call = store.get_call(added[0].id)
    assert (call.scope_name, call.source, call.request_model) == (
        "my_tool",
        "synthetic",
        "gpt-4o-mini",
    )
    assert call.attributes == {"finetuner.source": "synthetic", "n": 0}
    again = store.add_examples(records[:1], dataset="made")  # a second batch is new calls
    assert len(again) == 1 and again[0].id not in {e.id for e in added}
    assert store.get_call(again[0].id).source == "import"  # the default scope
    assert len(store.get_dataset("made")) == 4


@pytest.mark.parametrize(
    ("records", "kwargs", "problem"),
    [
        ([], {}, "a list of records"),
        ("not records", {}, "a list of records"),
        ([{"messages": [{"role": "user", "content": "q"}]}], {}, "last is the assistant"),
        ([{"nothing": 1}], {}, "record 0 needs 'messages'"),
        ([{"messages": _PAIR}], {"attributes": [{}, {}]}, "2 entries for 1 records"),
        ([{"messages": _PAIR}], {"dataset": "bad\nname"}, "control characters"),
        ([{"messages": _PAIR}], {"dataset": ""}, "empty"),
    ],
)
def test_add_examples_refuses_what_it_cannot_store(
    tmp_path: Path, records: object, kwargs: dict[str, object], problem: str
) -> None:
    store = Store(tmp_path / "s.duckdb")
    arguments: dict[str, object] = {"dataset": "d", **kwargs}
    with pytest.raises(ConfigurationError, match=problem):
        store.add_examples(records, **arguments)  # type: ignore[arg-type]
    assert not store.path.exists()  # nothing was written


def test_schema_status_reads_without_writing(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    empty = store.schema_status()
    assert empty.applied == () and empty.views_sha256 is None and not empty.up_to_date
    assert empty.pending == empty.known
    assert not store.path.exists()
    store.add_examples([{"messages": _PAIR}], dataset="d")
    before = store.path.read_bytes()
    status = store.schema_status()
    assert status.up_to_date and status.pending == () and status.unknown == ()
    assert status.applied == status.known
    assert store.path.read_bytes() == before


def test_a_dataset_records_its_exports_in_the_store_it_came_from(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    store.add_examples([{"messages": _PAIR}], dataset="d")
    export = store.get_dataset("d").to_jsonl(tmp_path / "out.jsonl")
    assert [s.id for s in store.snapshots("d")] == [export.sha256] == [export.snapshot]
    loose = finetuner_otel.Dataset("loose", list(store.get_dataset("d")))
    assert loose.to_jsonl(tmp_path / "loose.jsonl").snapshot is None


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_a_read_only_store_writes_nothing_at_all(tmp_path: Path) -> None:
    import duckdb

    writer = Store(tmp_path / "s.duckdb")
    [example] = writer.add_examples([{"messages": _PAIR}], dataset="d")
    # a spool file waiting (a read would ingest or quarantine it), and a schema as the previous
    # version left it (no views hash)
    writer.spool_dir.mkdir(parents=True, exist_ok=True)
    (writer.spool_dir / "00000000000000000001-1-1-0.jsonl").write_text('{"id": "broken')
    con = duckdb.connect(str(writer.path))
    con.execute("DROP TABLE finetuner_views")
    con.close()
    reader = Store(writer.path, read_only=True)
    before = _files(tmp_path)
    with pytest.raises(finetuner_otel.StoreError, match=r"needs a schema upgrade.*read-only"):
        reader.sql("SELECT count(*) FROM calls")
    assert not reader.schema_status().up_to_date
    for attempt in (
        lambda: reader.ingest(),
        lambda: reader.accept(example.id),
        lambda: reader.add_examples([{"messages": _PAIR}], dataset="d"),
        lambda: reader.import_jsonl(tmp_path / "missing.jsonl", "d"),
    ):
        with pytest.raises(finetuner_otel.StoreError, match="read-only"):
            attempt()
    assert _files(tmp_path) == before
    writer.list_datasets()  # a writer upgrades it (and sets the broken file aside)
    assert reader.sql("SELECT count(*) FROM calls").rows == [(1,)]
    assert reader.schema_status().up_to_date
    assert repr(reader).endswith("read_only=True)")
