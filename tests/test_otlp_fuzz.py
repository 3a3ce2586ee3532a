"""A fuzzer over ``finetuner serve``'s OTLP decoding (protobuf and OTLP/JSON), bounded for CI.

Structured-random ``ExportTraceServiceRequest``\\ s (deep, huge and odd AnyValues; ids of every
length, all-zero ones; enums out of range; JSON with fields of the wrong type) go through the
receiver's whole path, HTTP to the store: only 200, 400 or 413 comes back, within a bound, and
every stored row is a span that was sent with valid ids (none forged from a value's text). The
decoder alone is held to its bounds: nothing deeper than ``MAX_DEPTH``, and output proportional
to its budget.
"""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from finetuner_otel import Store
from finetuner_otel._json import dumps
from finetuner_otel._otlp import MAX_DEPTH, BadPayload, DecodedTooLarge
from finetuner_otel._otlp_decode import decode_request
from finetuner_otel._serve import OTLPReceiver

from ._otlp_requests import OUR_SCOPE, address, chat_attributes, export_request, text
from ._otlp_requests import span as chat_span

TOKEN = "fuzz-token"
HEADERS = {"authorization": f"Bearer {TOKEN}"}
INT64 = 2**63
KEYS = (
    "gen_ai.operation.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "finetuner.dataset",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.definitions",
    "gen_ai.response.finish_reasons",
    "gen_ai.usage.input_tokens",
    "finetuner.purpose",
)
# Text a sender might hope to see copied into a spool line: a line break and a row of its own.
FORGERY = '[]\n{"id":"forged","trace_id":"00","span_id":"00","dataset":"forged"}\n'

texts = st.text(max_size=30) | st.sampled_from(["chat", FORGERY, '"\\', "\u202e\x1b[31m"])


def _scalar() -> st.SearchStrategy[AnyValue]:
    return st.one_of(
        texts.map(lambda v: AnyValue(string_value=v)),
        st.booleans().map(lambda v: AnyValue(bool_value=v)),
        st.integers(-INT64, INT64 - 1).map(lambda v: AnyValue(int_value=v)),
        st.floats().map(lambda v: AnyValue(double_value=v)),
        st.binary(max_size=20).map(lambda v: AnyValue(bytes_value=v)),
        st.just(AnyValue()),
    )


def _nest(children: st.SearchStrategy[AnyValue]) -> st.SearchStrategy[AnyValue]:
    arrays = st.lists(children, max_size=4).map(
        lambda vs: AnyValue(array_value=ArrayValue(values=vs))
    )
    pairs = st.lists(st.tuples(texts, children), max_size=4).map(
        lambda kvs: AnyValue(
            kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kvs])
        )
    )
    return arrays | pairs


@st.composite
def _chain(draw: st.DrawFn) -> AnyValue:
    """One value nested 1 to 30 levels deep, arrays and key-value lists in turn (protobuf's
    own limit of 100 nested messages is a few levels beyond: see the test of the wire's)."""
    value = draw(_scalar())
    for level in range(draw(st.integers(1, 30))):
        if level % 2:
            value = AnyValue(array_value=ArrayValue(values=[value]))
        else:
            value = AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="k", value=value)]))
    return value


any_values = st.recursive(_scalar(), _nest, max_leaves=12) | _chain()


def _mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` nine times in ten: one bad id refuses a whole request, and most should pass."""
    return st.integers(0, 9).flatmap(lambda i: bad if i == 0 else good)


@st.composite
def _attributes(draw: st.DrawFn) -> list[KeyValue]:
    """Mostly a chat span (so that most become rows), its semconv attributes of any type."""
    chat = AnyValue(string_value="chat")
    operation = draw(_mostly(st.just(chat), _scalar() | _nest(_scalar())))
    out = [KeyValue(key="gen_ai.operation.name", value=operation)]
    for _ in range(draw(st.integers(0, 5))):
        key = draw(st.sampled_from(KEYS) | st.text(max_size=12))
        out.append(KeyValue(key=key, value=draw(any_values)))
    if draw(st.booleans()):
        messages = [{"role": "user", "parts": [{"type": "text", "content": draw(texts)}]}]
        text = json.dumps(messages) + draw(st.sampled_from(["", "\n", FORGERY]))
        out.append(KeyValue(key="gen_ai.input.messages", value=AnyValue(string_value=text)))
    return out


ids16 = _mostly(st.binary(min_size=16, max_size=16), st.binary(max_size=20))
ids8 = _mostly(st.binary(min_size=8, max_size=8), st.binary(max_size=10))
int32 = st.integers(-(2**31), 2**31 - 1)
uint64 = st.integers(0, 2**64 - 1)


@st.composite
def _span(draw: st.DrawFn) -> Span:
    return Span(
        trace_id=draw(ids16),
        span_id=draw(ids8),
        parent_span_id=draw(st.just(b"") | ids8),
        name=draw(texts),
        kind=draw(st.integers(0, 5) | int32),  # type: ignore[arg-type]
        start_time_unix_nano=draw(uint64),
        end_time_unix_nano=draw(uint64),
        attributes=draw(_attributes()),
        status=Status(code=draw(st.integers(0, 2) | int32), message=draw(texts)),  # type: ignore[arg-type]
    )


@st.composite
def export_requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    resources = []
    for _ in range(draw(st.integers(0, 2) | st.just(1))):
        scopes = [
            ScopeSpans(
                scope=InstrumentationScope(name=draw(st.just(OUR_SCOPE) | texts)),
                spans=draw(
                    st.lists(_span(), min_size=draw(st.sampled_from([0, 1, 1])), max_size=3)
                ),
            )
            for _ in range(draw(st.integers(0, 2) | st.just(1)))
        ]
        attributes = [KeyValue(key="service.name", value=draw(any_values))]
        resources.append(
            ResourceSpans(resource=Resource(attributes=attributes), scope_spans=scopes)
        )
    return ExportTraceServiceRequest(resource_spans=resources)


def _otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """OTLP/JSON: protobuf's JSON mapping with integer enums and hex ids."""
    document = json_format.MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return document


WRONG = st.sampled_from([7, "x", None, [], {}, True, -1.5, "zz" * 9])


def _wrong_type(document: dict[str, Any], where: int, value: Any) -> dict[str, Any]:
    """``document`` with one field of one span (or the envelope) given a value of the wrong
    type: what a hand-written OTLP/JSON sender gets wrong."""
    spans = [
        span
        for resource_spans in document.get("resourceSpans", [])
        for scope_spans in resource_spans.get("scopeSpans", [])
        for span in scope_spans.get("spans", [])
    ]
    if not spans:
        document["resourceSpans"] = value
        return document
    span = spans[where % len(spans)]
    key = ("traceId", "spanId", "kind", "attributes", "startTimeUnixNano", "status", "name")[
        where % 7
    ]
    span[key] = value
    return document


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, str, ExportTraceServiceRequest]:
    request = draw(export_requests())
    encoding = draw(st.sampled_from(["protobuf", "protobuf", "json", "json", "json-wrong"]))
    if encoding == "protobuf":
        return request.SerializeToString(), "application/x-protobuf", request
    document = _otlp_json(request)
    if encoding == "json-wrong":
        document = _wrong_type(document, draw(st.integers(0, 100)), draw(WRONG))
    return json.dumps(document).encode(), "application/json", request


def _valid_ids(request: ExportTraceServiceRequest) -> set[tuple[str, str]]:
    return {
        (span.trace_id.hex(), span.span_id.hex())
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
        if len(span.trace_id) == 16 and len(span.span_id) == 8
    }


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[OTLPReceiver]:
    with OTLPReceiver(tmp_path / "fuzz.duckdb", port=0, token=TOKEN, max_body=50_000) as r:
        yield r


def test_fuzzed_exports_get_200_400_or_413_and_forge_no_row(receiver: OTLPReceiver) -> None:
    sent: set[tuple[str, str]] = set()
    statuses: list[int] = []
    connection = http.client.HTTPConnection(*address(receiver.url), timeout=10)

    @settings(
        max_examples=120,
        deadline=timedelta(seconds=5),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=bodies())
    def one(case: tuple[bytes, str, ExportTraceServiceRequest]) -> None:
        body, content_type, request = case
        connection.request("POST", "/v1/traces", body, {**HEADERS, "content-type": content_type})
        response = connection.getresponse()
        reply = response.read()
        assert response.status in (200, 400, 413), reply
        statuses.append(response.status)
        if response.will_close:
            connection.close()
        if response.status == 200:
            sent.update(_valid_ids(request))

    try:
        one()
    finally:
        connection.close()
    assert receiver.exporter.force_flush()
    stored = Store(receiver.exporter.settings.db_path).sql("SELECT trace_id, span_id FROM calls")
    # The examples reach every outcome and the store, or the fuzzer tests nothing.
    assert {200, 400} <= set(statuses) and stored
    assert {(t, s) for t, s in stored} <= sent
    assert receiver.accepted >= len(stored)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, tuple | list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 1


@settings(max_examples=150, deadline=timedelta(seconds=5))
@given(request=export_requests(), factor=st.integers(1, 8))
def test_decoding_is_bounded_in_depth_and_in_output(
    request: ExportTraceServiceRequest, factor: int
) -> None:
    body = request.SerializeToString()
    budget = factor * (len(body) + 1)
    try:
        spans = decode_request(body, "application/x-protobuf", budget)
    except (BadPayload, DecodedTooLarge):
        return
    encoded = 0
    for span in spans:
        for value in (span.attributes or {}).values():
            assert _depth(value) <= MAX_DEPTH
        encoded += len(dumps(dict(span.attributes or {})))
        encoded += len(dumps(dict(span.resource.attributes)))
    # A character decoded is at most six written (\u00XX); a value's keys and commas are
    # within its VALUE_COST.
    assert encoded <= 6 * budget


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field, encoded by hand."""

    def varint(n: int) -> bytes:
        out = b""
        while n > 0x7F:
            out += bytes([n & 0x7F | 0x80])
            n >>= 7
        return out + bytes([n])

    return varint(number << 3 | 2) + varint(len(payload)) + payload


def test_a_value_nested_past_protobufs_own_limit_is_a_400(receiver: OTLPReceiver) -> None:
    """500 levels cannot be built with the protobuf classes; on the wire they are 4 KB, and
    parsing stops at protobuf's limit of 100 nested messages."""
    value = _field(1, b"x")  # AnyValue.string_value
    for _ in range(500):  # AnyValue.kvlist_value -> KeyValueList.values -> KeyValue.value
        value = _field(6, _field(1, _field(1, b"k") + _field(2, value)))
    span = _field(1, bytes(range(1, 17))) + _field(2, bytes(range(1, 9))) + _field(5, b"chat")
    span += _field(9, _field(1, b"deep") + _field(2, value))
    body = _field(1, _field(2, _field(2, span)))  # request -> resource_spans -> scope_spans
    connection = http.client.HTTPConnection(*address(receiver.url), timeout=10)
    connection.request("POST", "/v1/traces", body, HEADERS)
    response = connection.getresponse()
    assert response.status == 400 and b"not an OTLP trace export" in response.read()
    connection.close()


def test_structured_values_where_text_is_expected_are_no_500(receiver: OTLPReceiver) -> None:
    """OTLP allows any value in any attribute, and so does the SDK now (maps, nested arrays,
    bytes): an operation name or a model that is a key-value list is no row, and no crash."""
    structured = AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="a", value=text("b"))]))
    listed = AnyValue(array_value=ArrayValue(values=[text("chat")]))
    connection = http.client.HTTPConnection(*address(receiver.url), timeout=10)
    for key, value in (
        ("gen_ai.operation.name", structured),
        ("gen_ai.operation.name", listed),
        ("gen_ai.request.model", structured),
        ("finetuner.dataset", structured),
        ("gen_ai.input.messages", listed),
    ):
        attributes = [a for a in chat_attributes("structured") if a.key != key]
        body = export_request(chat_span(5, [*attributes, KeyValue(key=key, value=value)]))
        connection.request(
            "POST", "/v1/traces", body, {**HEADERS, "content-type": "application/x-protobuf"}
        )
        response = connection.getresponse()
        assert (key, response.status) == (key, 200), response.read()
        response.read()
    connection.close()


def _comparable(span: Any) -> tuple[Any, ...]:
    """A decoded span as plain values, NaN made comparable."""
    return (
        span.context.trace_id,
        span.context.span_id,
        span.parent.span_id if span.parent else None,
        span.name,
        span.kind,
        span.start_time,
        span.end_time,
        span.status.status_code,
        span.status.description,
        span.instrumentation_scope.name,
        repr(dict(span.attributes or {})),
        repr(dict(span.resource.attributes)),
    )


@settings(max_examples=100, deadline=timedelta(seconds=5))
@given(request=export_requests())
def test_protobuf_and_otlp_json_decode_alike(request: ExportTraceServiceRequest) -> None:
    """Two readers, one meaning: the same export in either encoding gives the same spans, or
    the same refusal."""
    budget = 1 << 30

    def decoded(body: bytes, content_type: str) -> Any:
        try:
            return [_comparable(s) for s in decode_request(body, content_type, budget)]
        except BadPayload:
            return "refused"

    as_protobuf = decoded(request.SerializeToString(), "application/x-protobuf")
    as_json = decoded(json.dumps(_otlp_json(request)).encode(), "application/json")
    assert as_json == as_protobuf
