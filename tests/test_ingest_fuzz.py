"""A fuzzer over spool ingest (hypothesis, bounded to a few seconds): spool files of good rows
mixed with random bytes, torn lines, wrong types, huge values and rows that break the table's
constraints. Ingest never raises or hangs; every good row goes in; every line is stored or
quarantined with its reason, never both or neither; no row appears that no line held."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finetuner_otel import Store
from finetuner_otel.store._files import REASON_SUFFIX, SUFFIX, pending_files, write_spool
from finetuner_otel.store._rows import CallRecord, encode_row

_ids = itertools.count()
_every_line_id: set[str] = set()
_T0 = 1_780_000_000 * 10**9


@pytest.fixture(scope="module")
def store_paths(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("ingest-fuzz")
    yield root / "s.duckdb", root / "s.duckdb.spool"


def _row(n: int, text: str) -> dict[str, Any]:
    record = CallRecord(
        trace_id=n + 1,
        span_id=n + 1,
        start_ns=_T0 + n,
        end_ns=_T0 + n + 5,
        dataset="fuzz",
        operation="chat",
        input_messages=[{"role": "user", "parts": [{"type": "text", "content": text}]}],
        output_messages=[{"role": "assistant", "parts": [{"type": "text", "content": "a"}]}],
        attributes={"note": text},
    )
    row: dict[str, Any] = json.loads(encode_row(record))
    return row


_texts = st.text(max_size=30)
_columns = st.sampled_from(
    ["trace_id", "span_id", "dataset", "started_at", "ended_at", "duration_ms", "status",
     "trainable", "input_tokens", "finish_reasons", "input_messages", "attributes"]
)  # fmt: skip
_NOT_NULL = ["trace_id", "span_id", "dataset", "started_at", "ended_at", "status", "trainable"]
_odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    _texts,
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)

# Each line: (kind, builder). Kinds: "good" must be stored; "bad" must be quarantined;
# "either" is stored or quarantined (DuckDB may convert a wrong type), never both or neither.
_good = st.builds(lambda t: ("good", lambda n: json.dumps(_row(n, t), ensure_ascii=False)), _texts)
_huge = st.integers(min_value=100_000, max_value=200_000).map(
    lambda size: ("good", lambda n: json.dumps({**_row(n, "h"), "error_message": "é" * size}))
)
_wrong_type = st.builds(
    lambda column, value: ("either", lambda n: json.dumps({**_row(n, "w"), column: value})),
    _columns,
    _odd_values,
)
_null = st.sampled_from(_NOT_NULL).map(
    lambda column: ("bad", lambda n: json.dumps({**_row(n, "c"), column: None}))
)
_torn = st.floats(min_value=0.01, max_value=0.99).map(
    lambda cut: ("bad", lambda n: (line := json.dumps(_row(n, "t")))[: int(len(line) * cut)])
)
_garbage = st.binary(min_size=1, max_size=60).map(
    lambda data: ("bad", lambda n: data.replace(b"\n", b"?").replace(b"\r", b"?") + b"\x01")
)
_lines = st.lists(
    st.one_of(_good, _good, _huge, _wrong_type, _null, _torn, _garbage), min_size=1, max_size=10
)


def _quarantined(spool: Path, file_name: str) -> dict[int, bytes]:
    """Line number -> line of what ingest set aside from one spool file."""
    stem = file_name.removesuffix(SUFFIX)
    reasons_file = spool / "quarantine" / (stem + REASON_SUFFIX)
    if not reasons_file.exists():
        return {}
    reasons = reasons_file.read_text().splitlines()
    assert all(r.split(":", 1)[1].strip() for r in reasons)  # each with a reason
    numbers = [int(r.split(":")[0].removeprefix("line ")) for r in reasons]
    kept = (spool / "quarantine" / file_name).read_bytes().split(b"\n")[: len(numbers)]
    return dict(zip(numbers, kept, strict=True))


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(files=st.lists(_lines, min_size=1, max_size=3))
def test_ingest_takes_every_good_row_and_sets_every_bad_line_aside(
    store_paths: tuple[Path, Path], files: list[list[tuple[str, Any]]]
) -> None:
    db, spool = store_paths
    expected: list[tuple[str, str, int, bytes]] = []  # kind, id, line number, line; by file
    written: list[tuple[Path, list[tuple[str, str, int, bytes]]]] = []
    for lines in files:
        made = []
        for number, (kind, build) in enumerate(lines, 1):
            n = next(_ids)
            line = build(n)
            data = line if isinstance(line, bytes) else line.encode("utf-8", "surrogatepass")
            made.append((kind, _row(n, "")["id"], number, data))
        path = spool / f"{next(_ids):020d}-1-1-0{SUFFIX}"
        spool.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(data + b"\n" for *_, data in made))
        written.append((path, made))
        expected += made
    Store(db).ingest()  # never raises: nothing here is the machine's fault
    assert pending_files(spool) == []
    stored = {r[0] for r in Store(db).sql("SELECT id FROM calls").rows}
    for path, made in written:
        aside = _quarantined(spool, path.name)
        for kind, row_id, number, data in made:
            is_stored, is_aside = row_id in stored, number in aside
            assert is_stored != is_aside, (kind, data[:200], is_stored, is_aside)
            assert kind != "good" or is_stored, data[:200]
            assert kind != "bad" or is_aside, data[:200]
            if is_aside:
                assert aside[number] == data
    # No forged row: every row in the store (shared by the examples) is one a line held.
    _every_line_id.update(row_id for _, row_id, _, _ in expected)
    assert stored <= _every_line_id


def test_write_spool_then_ingest_round_trips_any_text(tmp_path: Path) -> None:
    # Lone surrogates and every control character, through the encoder and the spool.
    db, spool = tmp_path / "s.duckdb", tmp_path / "s.duckdb.spool"
    texts = ["\ud800 lone", "".join(chr(c) for c in range(32)) + "\u2028\u2029\x7f", "é🙂\u202e"]
    records = [
        CallRecord(trace_id=1, span_id=i + 1, start_ns=_T0, end_ns=_T0, error_message=text)
        for i, text in enumerate(texts)
    ]
    write_spool(spool, [encode_row(r) for r in records])
    assert Store(db).ingest() == 1
    got = [r[0] for r in Store(db).sql("SELECT error_message FROM calls ORDER BY span_id").rows]
    assert got == ["\ufffd lone", texts[1], texts[2]]
    assert not (spool / "quarantine").exists()
