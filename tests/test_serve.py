"""``finetuner serve``: the SDK's real OTLP/HTTP exporter into the receiver, into the store."""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from finetuner_otel import Store
from finetuner_otel._serve import OTLPReceiver
from finetuner_otel.instrumentation import OpenAIInstrumentor
from finetuner_otel.testing import OpenAIServer, Reply

TOKEN = "serve-token-123"


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[OTLPReceiver]:
    with OTLPReceiver(tmp_path / "central.duckdb", port=0, token=TOKEN, max_body=200_000) as r:
        yield r


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_the_sdks_otlp_exporter_fills_the_central_store(
    receiver: OTLPReceiver, server: OpenAIServer, compression: Compression
) -> None:
    """An app on another host: our instrumentor, the standard OTLP exporter, no DuckDB."""
    provider = TracerProvider(resource=Resource({"service.name": "search-api"}))
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(
                endpoint=receiver.url,
                headers={"authorization": f"Bearer {TOKEN}"},
                compression=compression,
            )
        )
    )
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        client = server.client()
        for i in range(5):
            server.enqueue(Reply(f"label {i}"))
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": f"query {i}"}],
                dataset_name="remote",
            )
        with provider.get_tracer("app").start_as_current_span("not a GenAI span"):
            pass
        assert provider.force_flush()
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
    receiver.exporter.force_flush()
    store = Store(receiver.exporter._settings.db_path)
    result = store.sql(
        "SELECT completion->>'content', service_name, scope_name FROM calls "
        "WHERE dataset = 'remote' ORDER BY started_at"
    )
    assert [r[0] for r in result] == [f"label {i}" for i in range(5)]
    assert {(r[1], r[2]) for r in result} == {("search-api", "finetuner_otel.instrumentation")}
    assert store.get_dataset("remote")[0].messages == [{"role": "user", "content": "query 0"}]
    assert receiver.accepted == 6  # the plain span was received, and not stored


def _json_export(span_id: str = "00f067aa0ba902b7") -> dict:  # type: ignore[type-arg]
    attribute = lambda k, v: {"key": k, "value": {"stringValue": v}}  # noqa: E731
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [attribute("service.name", "json-client")]},
                "scopeSpans": [
                    {
                        "scope": {"name": "some.genai.instrumentation"},
                        "spans": [
                            {
                                "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
                                "spanId": span_id,
                                "name": "chat m",
                                "kind": 3,
                                "startTimeUnixNano": "1764201600000000000",
                                "endTimeUnixNano": "1764201601000000000",
                                "attributes": [
                                    attribute("gen_ai.operation.name", "chat"),
                                    attribute("gen_ai.request.model", "m"),
                                    attribute("finetuner.dataset", "json"),
                                    attribute(
                                        "gen_ai.input.messages",
                                        json.dumps(
                                            [
                                                {
                                                    "role": "user",
                                                    "parts": [{"type": "text", "content": "hi"}],
                                                }
                                            ]
                                        ),
                                    ),
                                    attribute(
                                        "gen_ai.output.messages",
                                        json.dumps(
                                            [
                                                {
                                                    "role": "assistant",
                                                    "finish_reason": "stop",
                                                    "parts": [{"type": "text", "content": "yo"}],
                                                }
                                            ]
                                        ),
                                    ),
                                ],
                                "status": {"code": 1},
                            }
                        ],
                    }
                ],
            }
        ]
    }


def test_otlp_json_gzip_and_every_refusal(receiver: OTLPReceiver) -> None:
    auth = {"authorization": f"Bearer {TOKEN}"}
    body = json.dumps(_json_export()).encode()
    status, reply = _post(receiver.url, body, {**auth, "content-type": "application/json"})
    assert (status, reply) == (200, b"{}")
    status, _ = _post(
        receiver.url,
        gzip.compress(json.dumps(_json_export("00f067aa0ba902b8")).encode()),
        {**auth, "content-type": "application/json", "content-encoding": "gzip"},
    )
    assert status == 200
    receiver.exporter.force_flush()
    store = Store(receiver.exporter._settings.db_path)
    assert [e.completion["content"] for e in store.get_dataset("json")] == ["yo", "yo"]

    status, reply = _post(receiver.url, body, {"content-type": "application/json"})
    assert status == 401 and b"bearer token" in reply
    status, reply = _post(receiver.url, b"{not json", {**auth, "content-type": "application/json"})
    assert status == 400 and b"not an OTLP trace export" in reply
    status, reply = _post(
        receiver.url, b"\xff\x00garbage", {**auth, "content-type": "application/x-protobuf"}
    )
    assert status == 400
    status, reply = _post(receiver.url, b"x", {**auth, "content-type": "text/plain"})
    assert status == 400 and b"unsupported content-type" in reply
    bomb = gzip.compress(b" " * 1_000_000)  # small on the wire, over the limit inflated
    status, reply = _post(
        receiver.url, bomb, {**auth, "content-type": "application/json", "content-encoding": "gzip"}
    )
    assert status == 413
    status, _ = _post(receiver.url, b"x" * 300_000, {**auth, "content-type": "application/json"})
    assert status == 413
    status, _ = _post(receiver.url.replace("/v1/traces", "/v1/logs"), body, auth)
    assert status == 404
    # after all that, it still serves
    assert _post(receiver.url, body, {**auth, "content-type": "application/json"})[0] == 200


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payload=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
        ),
        max_leaves=20,
    )
    | st.binary(max_size=200)
)
def test_malformed_payloads_get_a_4xx_never_a_crash(
    receiver: OTLPReceiver, payload: object
) -> None:
    if isinstance(payload, bytes):
        body, kind = payload, "application/x-protobuf"
    else:
        body, kind = json.dumps(payload).encode(), "application/json"
    status, _ = _post(
        receiver.url, body, {"authorization": f"Bearer {TOKEN}", "content-type": kind}
    )
    assert status in (200, 400)


def test_routes_encodings_and_unknown_json_fields(receiver: OTLPReceiver) -> None:
    auth = {"authorization": f"Bearer {TOKEN}"}
    body = _json_export()
    body["resourceSpans"][0]["someFieldOfANewerOTLP"] = {"x": 1}  # receivers MUST ignore it
    encoded = json.dumps(body).encode()
    json_headers = {**auth, "content-type": "application/json"}
    assert _post(receiver.url + "/", encoded, json_headers) == (200, b"{}")
    status, reply = _post(receiver.url, encoded, {**json_headers, "content-encoding": "br"})
    assert status == 400 and b"unsupported content-encoding 'br'" in reply
    request = urllib.request.Request(receiver.url, method="GET")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 405 and refused.value.read() == b"POST OTLP traces to /v1/traces"
    status, reply = _post(receiver.url, b"", {**auth, "content-type": "application/x-protobuf"})
    assert status == 200 and reply == b""  # an empty export: nothing to store, nothing wrong
