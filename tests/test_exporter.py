"""DuckDBSpanExporter on its own: the rows it writes come from its encoder whatever a span
says (no forged rows, no unchecked dataset names), spans of other instrumentations are
redacted, and a full disk loses nothing that space later allows."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from finetuner_otel import Store
from finetuner_otel.exporters import DuckDBSpanExporter
from finetuner_otel.exporters._spans import OUR_SCOPE, span_to_line
from finetuner_otel.store._schema import INGEST_COLUMNS


def _messages(role: str, text: str) -> str:
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}]}])


def _span(
    attributes: Mapping[str, Any], scope: str = OUR_SCOPE, error: str | None = None
) -> ReadableSpan:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer(scope).start_as_current_span("chat m") as span:
        span.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.input.messages": _messages("user", "hi"),
                "gen_ai.output.messages": _messages("assistant", "hello"),
                **attributes,
            }
        )
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
    [finished] = memory.get_finished_spans()
    return finished


def _row_id(span: ReadableSpan) -> str:
    ctx = span.get_span_context()
    assert ctx is not None
    return f"{ctx.trace_id:032x}{ctx.span_id:016x}{span.start_time:016x}"


def _export(tmp_path: Path, spans: list[ReadableSpan], **options: Any) -> Store:
    exporter = DuckDBSpanExporter(tmp_path / "s.duckdb", ingest_interval=3600, **options)
    exporter.export(spans)
    assert exporter.force_flush()
    exporter.shutdown()
    return Store(tmp_path / "s.duckdb")


# What a span naming our scope sent to `finetuner serve` could carry in gen_ai.input.messages on
# main, where that attribute's text was copied into the spool line as it was: the rest of its
# own line, a row of the sender's choosing (its id, trainable, back-dated), and the start of a
# third line that the real line's tail completes.
_FORGED_ROW = {
    "id": "forged",
    "trace_id": "f" * 32,
    "span_id": "f" * 16,
    "dataset": "victim",
    "operation": "chat",
    "started_at": "2001-01-01T00:00:00+00:00",
    "ended_at": "2001-01-01T00:00:01+00:00",
    "duration_ms": 1000.0,
    "status": "ok",
    "input_messages": json.loads(_messages("user", "forged question")),
    "output_messages": json.loads(_messages("assistant", "forged answer")),
    "trainable": True,
    "attributes": {},
}
_TAIL_START = {k: _FORGED_ROW[k] for k in ("id", "trace_id", "dataset", "started_at", "ended_at")}
_REST_OF_LINE = (
    ',"output_messages":null,"system_instructions":null,"tool_definitions":null,'
    '"trainable":false,"untrainable_reason":null,"service_name":null,"scope_name":null,'
    '"attributes":{}}'
)
_INJECTION = "\n".join(
    (
        "[]" + _REST_OF_LINE,
        json.dumps(_FORGED_ROW),
        json.dumps({**_TAIL_START, "id": "tail", "span_id": "e" * 16, "duration_ms": 1.0})[:-1]
        + ',"status":"ok","input_messages":[]',
    )
)


@pytest.mark.parametrize("scope", [OUR_SCOPE, "someone.else"])
def test_a_span_cannot_write_a_row_of_its_own(tmp_path: Path, scope: str) -> None:
    # On main, with our scope: 1 span accepted, 3 rows stored, 2 of them forged ("forged",
    # trainable and back-dated to 2001, and "tail").
    span = _span({"gen_ai.input.messages": _INJECTION, "finetuner.dataset": "app"}, scope)
    line = span_to_line(span)
    assert "\n" not in line and "\r" not in line
    store = _export(tmp_path, [span])
    rows = store.sql("SELECT id, dataset, trainable, input_messages FROM calls").rows
    assert [(r[0], r[1], r[2]) for r in rows] == [(_row_id(span), "app", False)]
    assert rows[0][3] is None  # the attribute is not JSON: not stored as if it were


def test_every_line_holds_the_ingest_columns_and_parses_on_its_own() -> None:
    span = _span({"gen_ai.system_instructions": json.dumps([{"type": "text", "content": "a\nb"}])})
    line = span_to_line(span)
    assert "\n" not in line
    assert list(json.loads(line)) == list(INGEST_COLUMNS)


@pytest.mark.parametrize(
    "name",
    [
        "a\x00b",
        "two\nlines",
        "\u202egnp.exe",  # a right-to-left override: shows as "exe.png"
        "iso\u2066late",
        "\x1b[31mred",  # a terminal escape
        "\x9b31mred",  # the one-byte CSI (C1 control)
        "x" * 201,
        "   ",
    ],
)
def test_a_refused_dataset_name_is_kept_under_default_with_the_reason(
    tmp_path: Path, name: str
) -> None:
    span = _span({"finetuner.dataset": name}, scope="someone.else")
    store = _export(tmp_path, [span])
    [(dataset, attributes)] = store.sql("SELECT dataset, attributes FROM calls").rows
    assert dataset == "default"
    reason = json.loads(attributes)["finetuner.dataset_refused"]
    assert reason.startswith("dataset name") and name not in reason


def test_a_good_dataset_name_from_any_scope_is_used(tmp_path: Path) -> None:
    spans = [
        _span({"finetuner.dataset": "émoji 🙂 ok"}, scope="someone.else"),
        _span({"finetuner.dataset": "ours"}),
    ]
    store = _export(tmp_path, spans)
    rows = store.sql("SELECT dataset, attributes FROM calls ORDER BY dataset").rows
    assert [r[0] for r in rows] == ["ours", "émoji 🙂 ok"]
    assert all("finetuner.dataset_refused" not in json.loads(r[1] or "{}") for r in rows)


_SECRET = "sk-proj-abcdefghijklmnopqrstuvwxyz012345"


def _secret_everywhere(scope: str) -> ReadableSpan:
    tools = [{"type": "function", "name": "f", "description": f"key {_SECRET}"}]
    return _span(
        {
            "gen_ai.input.messages": _messages("user", f"my key is {_SECRET}"),
            "gen_ai.output.messages": _messages("assistant", f"noted: {_SECRET}"),
            "gen_ai.system_instructions": json.dumps([{"type": "text", "content": _SECRET}]),
            "gen_ai.tool.definitions": json.dumps(tools),
            "finetuner.request.options": json.dumps({"user": _SECRET}),
            "gen_ai.response.id": f"resp {_SECRET}",
            "app.note": f"note {_SECRET}",
            "app.tags": ("a", _SECRET),
            "error.type": "AuthenticationError",
        },
        scope=scope,
        error=f"401: invalid key {_SECRET}",
    )


def _stored_bytes(tmp_path: Path) -> list[bytes]:
    return [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()]


def test_spans_of_other_instrumentations_are_redacted_before_they_are_written(
    tmp_path: Path,
) -> None:
    # On main: the secret was stored in every one of these fields (no redaction of foreign spans).
    store = _export(tmp_path, [_secret_everywhere("someone.else")], redact=["api_key"])
    assert store.sql("SELECT count(*) FROM calls").rows == [(1,)]
    assert all(_SECRET.encode() not in data for data in _stored_bytes(tmp_path))
    [(messages, error)] = store.sql("SELECT input_messages, error_message FROM calls").rows
    assert "[REDACTED:api_key]" in messages and "[REDACTED:api_key]" in error


def test_finetuner_redact_applies_when_no_redact_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINETUNER_REDACT", "api_key")
    _export(tmp_path, [_secret_everywhere("someone.else")])
    assert all(_SECRET.encode() not in data for data in _stored_bytes(tmp_path))


def test_our_own_spans_are_not_redacted_twice(tmp_path: Path) -> None:
    calls: list[str] = []

    def shout(text: str) -> str:
        calls.append(text)
        return text.upper()

    store = _export(tmp_path, [_span({}), _span({}, scope="someone.else")], redact=shout)
    rows = store.sql("SELECT scope_name, input_messages FROM calls ORDER BY scope_name").rows
    assert [(r[0], "HI" in r[1]) for r in rows] == [(OUR_SCOPE, False), ("someone.else", True)]


@pytest.mark.parametrize("redact", [None, ["api_key"]])
def test_values_a_receiver_decodes_from_kvlists_and_arrays_never_break_export(
    tmp_path: Path, redact: list[str] | None
) -> None:
    # OTLP lets a sender put a kvlist or an array wherever a string is expected; the receiver
    # hands them on as dicts and lists, which the SDK's own spans never hold.
    from opentelemetry.sdk.trace import ReadableSpan as Span
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext

    odd: list[Any] = [{"k": _SECRET}, [_SECRET, {"x": [1]}], {"nested": {"deeper": [None]}}]
    keys = ["gen_ai.request.model", "gen_ai.response.id", "gen_ai.provider.name", "error.type",
            "finetuner.dataset", "gen_ai.response.finish_reasons", "gen_ai.usage.input_tokens",
            "gen_ai.input.messages", "finetuner.purpose", "app.other"]  # fmt: skip
    spans = [
        Span(
            name="chat",
            context=SpanContext(7, i + 1, is_remote=False),
            attributes={"gen_ai.operation.name": "chat", **{key: value for key in keys}},
            instrumentation_scope=InstrumentationScope("someone.else"),
            start_time=1_780_000_000 * 10**9,
            end_time=1_780_000_001 * 10**9,
        )
        for i, value in enumerate(odd)
    ]
    operation = {"gen_ai.operation.name": {"a": 1}}
    odd_op = Span(name="x", context=SpanContext(7, 99, False), attributes=operation)
    store = _export(tmp_path, [*spans, odd_op], redact=redact)
    rows = store.sql("SELECT dataset, trainable FROM calls").rows
    assert rows == [("default", False)] * len(odd)
    if redact:
        assert all(_SECRET.encode() not in data for data in _stored_bytes(tmp_path))


_json_like = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(),
        st.text(max_size=20),
        st.sampled_from(['[]\n{"id":"forged"}', "\u2028\u202e\x00", '{"a":1}', "[1e400]"]),
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
_keys = st.sampled_from(
    ["gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
     "gen_ai.tool.definitions", "finetuner.request.options", "finetuner.dataset",
     "gen_ai.request.model", "gen_ai.response.finish_reasons", "gen_ai.usage.input_tokens",
     "finetuner.purpose", "finetuner.incomplete", "error.type", "anything.else"]
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    attributes=st.dictionaries(_keys, _json_like | _json_like.map(json.dumps), max_size=8),
    ours=st.booleans(),
    redact=st.booleans(),
)
def test_any_decoded_attributes_make_exactly_one_line_of_our_own(
    attributes: dict[str, Any], ours: bool, redact: bool
) -> None:
    # Whatever a receiver decodes (kvlists as dicts, arrays as lists, JSON text or not): one
    # line, no line break, the ingest columns, our id, a checked dataset name.
    from opentelemetry.sdk.trace import ReadableSpan as Span
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext

    from finetuner_otel._redact import Redactor
    from finetuner_otel._settings import check_dataset_name

    span = Span(
        name="chat",
        context=SpanContext(5, 6, is_remote=False),
        attributes={**attributes, "gen_ai.operation.name": "chat"},
        instrumentation_scope=InstrumentationScope(OUR_SCOPE if ours else "other"),
        start_time=1_780_000_000 * 10**9,
        end_time=1_780_000_000 * 10**9 + 5,
    )
    line = span_to_line(span, Redactor(["api_key"]) if redact else None)
    assert "\n" not in line and "\r" not in line
    row = json.loads(line)
    assert list(row) == list(INGEST_COLUMNS)
    assert row["id"] == f"{5:032x}{6:016x}{span.start_time:016x}"
    assert check_dataset_name(row["dataset"]) == row["dataset"]
    assert isinstance(row["trainable"], bool)
