"""``finetuner serve`` against hostile senders: each attack of issue 18 is a test that holds.

The receiver runs in a process of its own where memory is measured (its peak RSS, VmHWM), and in
this one where threads are counted. The honest client is the SDK's real OTLP/HTTP exporter.
"""

from __future__ import annotations

import gzip
import io
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from finetuner_otel import ConfigurationError, Store
from finetuner_otel._otlp import DEEP_MARKER
from finetuner_otel._serve import OTLPReceiver
from finetuner_otel.cli import main as cli
from finetuner_otel.instrumentation import OpenAIInstrumentor
from finetuner_otel.testing import OpenAIServer, Reply

from ._otlp_requests import (
    KeyValue,
    chat_attributes,
    connect,
    empty_messages_bomb,
    export_request,
    kvlist_bomb,
    post_head,
    read_reply,
    span,
    stats,
    text,
)

TOKEN = "attack-token-123"
AUTH = {"authorization": f"Bearer {TOKEN}"}
PROTOBUF = {**AUTH, "content-type": "application/x-protobuf"}
CHILD = Path(__file__).with_name("_receiver_child.py")
MB = 1024 * 1024


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float = 60) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def child(tmp_path: Path) -> Iterator[tuple[Any, str, Path]]:
    """A receiver in its own process with the production limits (16 MB bodies)."""
    db = tmp_path / "served.duckdb"
    with subprocess.Popen(
        [sys.executable, str(CHILD), str(db), TOKEN, str(16 * MB)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            url = json.loads(process.stdout.readline())["url"]  # type: ignore[union-attr]
            yield process, url, db
        finally:
            process.stdin.close()  # type: ignore[union-attr]
            process.wait(timeout=60)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[OTLPReceiver]:
    with OTLPReceiver(
        tmp_path / "central.duckdb", port=0, token=TOKEN, max_body=200_000, read_timeout=1.5
    ) as r:
        yield r


def test_the_nested_kvlist_bomb_is_answered_at_once_in_bounded_memory(
    child: tuple[Any, str, Path],
) -> None:
    """Before: 753 bytes grew to gigabytes of JSON and the server stopped answering. Now the
    value is decoded once, cut at 16 levels with a marker, and the call is kept."""
    process, url, db = child
    assert _post(url, export_request(span(9, chat_attributes("warm"))), PROTOBUF)[0] == 200
    before = stats(process)
    bomb = kvlist_bomb(30)
    assert len(bomb) < 1000
    for _ in range(20):
        assert _post(url, bomb, PROTOBUF, timeout=30)[0] == 200
    after = stats(process, "flush")
    assert after["peak_rss_kb"] - before["peak_rss_kb"] < 50 * 1024, (before, after)
    assert after["accepted"] == 21
    [(stored,)] = Store(db).sql("SELECT attributes->>'bomb' FROM calls WHERE dataset = 'bomb'")
    depth = 0
    value: Any = json.loads(stored)
    while isinstance(value, dict):
        value, depth = value["k"], depth + 1
    assert (value, depth) == (DEEP_MARKER, 15)  # levels 1-15 kept, the 16th marked


def test_millions_of_empty_messages_stop_the_decoder_early(child: tuple[Any, str, Path]) -> None:
    """Before: 16 MB of empty messages took 36 s and 507 MB (protobuf), 39 s and 767 MB
    (OTLP/JSON, through protobuf's JSON mapping), answered 200. Now each costs its share of the
    decoded budget: 413 within a second, in no more memory than the body."""
    process, url, _ = child
    assert _post(url, export_request(span(9, chat_attributes("warm"))), PROTOBUF)[0] == 200
    before = stats(process)
    kinds = (("protobuf", "application/x-protobuf"), ("json", "application/json"))
    for kind, content_type in kinds:
        body = empty_messages_bomb(kind)
        assert len(body) <= 16 * MB
        status, reply = _post(url, body, {**AUTH, "content-type": content_type}, timeout=60)
        assert status == 413 and b"decoded request is over" in reply, (kind, reply)
    after = stats(process)
    # The body itself, and little more: the protobuf containers are read from its bytes (parsed
    # whole, protobuf held 32 bytes a byte of them), and a JSON body that is mostly brackets
    # is refused before json.loads makes a 64-byte dict of each 2-byte {}.
    assert after["peak_rss_kb"] - before["peak_rss_kb"] < 64 * 1024, (before, after)


def test_gzip_bombs_are_refused_while_inflating_in_bounded_memory(
    child: tuple[Any, str, Path],
) -> None:
    """100 MB of zeros in 100 KB of gzip: refused at 16 MB inflated, never inflated whole."""
    process, url, _ = child
    assert _post(url, export_request(span(9, chat_attributes("warm"))), PROTOBUF)[0] == 200
    before = stats(process)
    bomb = gzip.compress(bytes(100 * MB), compresslevel=9)
    assert len(bomb) < 200_000
    headers = {**PROTOBUF, "content-encoding": "gzip"}
    for _ in range(5):
        status, reply = _post(url, bomb, headers)
        assert status == 413 and b"uncompressed" in reply
    after = stats(process)
    # At most one cap's worth (16 MB) inflated at a time, and its pieces: not 100 MB.
    assert after["peak_rss_kb"] - before["peak_rss_kb"] < 48 * 1024, (before, after)
    # Two gzip members are one body; a truncated one is a 400 with the reason.
    body = export_request(span(10, chat_attributes("gz")))
    two = gzip.compress(body[:20]) + gzip.compress(body[20:])
    assert _post(url, two, headers)[0] == 200
    status, reply = _post(url, gzip.compress(body)[:-12], headers)
    assert status == 400 and b"truncated" in reply


def test_slow_connections_hold_no_thread_and_honest_clients_still_get_in(
    receiver: OTLPReceiver, server: OpenAIServer
) -> None:
    """Before: 400 slowloris connections held 400 threads, for ever. Now they are asyncio's,
    an honest exporter's spans get in beside them, and each is closed at its deadline."""
    threads = threading.active_count()
    slow: list[socket.socket] = []
    partial_headers = post_head(receiver.url, PROTOBUF)[:-30]
    partial_body = post_head(receiver.url, {**PROTOBUF, "content-length": "100000"}) + b"\0" * 10
    for i in range(400):
        sock = connect(receiver.url)
        sock.sendall(partial_headers if i % 2 else partial_body)
        slow.append(sock)
    time.sleep(0.3)
    assert threading.active_count() < threads + 10

    provider = TracerProvider(resource=Resource({"service.name": "honest"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=receiver.url, headers=AUTH, timeout=10))
    )
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        client = server.client()
        for i in range(5):
            server.enqueue(Reply(f"label {i}"))
            client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": f"q {i}"}], dataset_name="honest"
            )
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
    receiver.exporter.force_flush()
    store = Store(receiver.exporter.settings.db_path)
    assert [e.completion["content"] for e in store.get_dataset("honest")] == [
        f"label {i}" for i in range(5)
    ]
    # Headers late: closed without a word; a body late: 408, then closed.
    outcomes = [read_reply(sock, timeout=15) for sock in slow]
    closed = [
        closed or read_reply(sock, timeout=5)[2]
        for sock, (_, _, closed) in zip(slow, outcomes, strict=True)
    ]
    for sock in slow:
        sock.close()
    assert all(closed)
    assert {status for status, _, _ in outcomes[1::2]} == {None}
    assert {status for status, _, _ in outcomes[0::2]} == {408}


def test_the_token_is_checked_before_any_byte_of_the_body(tmp_path: Path) -> None:
    """Before: up to 16 MB was read, then the token checked. Now a wrong token with a 15 MB
    Content-Length and no body is answered 401 at once, and the connection closed."""
    with OTLPReceiver(tmp_path / "db.duckdb", port=0, token=TOKEN, max_body=16 * MB) as receiver:
        for given in ({"authorization": "Bearer wrong"}, {}):
            sock = connect(receiver.url)
            head = {**given, "content-type": "application/x-protobuf"}
            sock.sendall(post_head(receiver.url, {**head, "content-length": str(15 * MB)}))
            status, reply, _ = read_reply(sock, timeout=10)
            assert status == 401 and b"bearer token" in reply
            assert read_reply(sock, timeout=10)[2]  # closed, not drained
            sock.close()
        # Over max_body by its Content-Length: 413 before the body, too.
        sock = connect(receiver.url)
        sock.sendall(post_head(receiver.url, {**PROTOBUF, "content-length": str(17 * MB)}))
        assert read_reply(sock, timeout=10)[0] == 413
        sock.close()
        assert receiver.refused == 3


def test_a_chunked_body_over_the_limit_is_refused_while_it_is_read(
    receiver: OTLPReceiver,
) -> None:
    """No Content-Length to check: the body is counted as it arrives and refused at the
    limit (200 KB here), without waiting for an end that never comes."""
    sock = connect(receiver.url)
    sock.sendall(post_head(receiver.url, {**PROTOBUF, "transfer-encoding": "chunked"}))
    chunk = b"\0" * 50_000
    for _ in range(5):
        sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    status, reply, _ = read_reply(sock, timeout=10)
    assert status == 413 and b"200000 bytes" in reply
    assert read_reply(sock, timeout=10)[2]
    sock.close()
    # a chunked body under the limit is a body like any other
    body = export_request(span(3, chat_attributes("chunked")))
    sock = connect(receiver.url)
    sock.sendall(post_head(receiver.url, {**PROTOBUF, "transfer-encoding": "chunked"}))
    sock.sendall(f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
    assert read_reply(sock, timeout=10)[0] == 200
    sock.close()


def test_bodies_held_at_once_are_bounded(receiver: OTLPReceiver) -> None:
    """Past what all requests may hold together, a new one gets 503 and Retry-After (the OTLP
    exporter's cue to retry), and the first is served as usual."""
    receiver.buffered_limit = 60_000
    body = export_request(span(4, [*chat_attributes("held"), *_padding(45_000)]))
    first = connect(receiver.url)
    first.sendall(post_head(receiver.url, {**PROTOBUF, "content-length": str(len(body))}))
    first.sendall(body[:40_000])
    time.sleep(0.3)
    second = connect(receiver.url)
    second.sendall(post_head(receiver.url, {**PROTOBUF, "content-length": str(len(body))}))
    second.sendall(body[:40_000])
    status, reply, _ = read_reply(second, timeout=10)
    assert status == 503 and b"retry-after: 1" in reply.lower()
    first.sendall(body[40_000:])
    assert read_reply(first, timeout=10)[0] == 200
    first.close()
    second.close()


def _padding(size: int) -> list[KeyValue]:
    return [KeyValue(key="padding", value=text("x" * size))]


def test_off_the_loopback_a_token_is_required_at_start(tmp_path: Path) -> None:
    db = tmp_path / "db.duckdb"
    for host in ("0.0.0.0", "::", "192.0.2.1"):
        with pytest.raises(ConfigurationError, match="--token or set FINETUNER_SERVE_TOKEN"):
            OTLPReceiver(db, host=host, port=0)
    with pytest.raises(ConfigurationError, match="token is empty"):
        OTLPReceiver(db, port=0, token="")
    with OTLPReceiver(db, host="0.0.0.0", port=0, token=TOKEN) as receiver:
        assert receiver.url.startswith("http://0.0.0.0:")
    err = io.StringIO()
    assert cli(["--db", str(db), "serve", "--host", "0.0.0.0", "--port", "0"], err=err) == 1
    assert "--token" in err.getvalue() and "FINETUNER_SERVE_TOKEN" in err.getvalue()


def test_a_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match=r"--port 0 picks a free one"):
            OTLPReceiver(tmp_path / "db.duckdb", port=port)


def test_a_span_naming_our_scope_writes_no_row_of_its_own(receiver: OTLPReceiver) -> None:
    """Before: our scope's gen_ai.input.messages was copied into the spool line as it came, so
    a line break in it started a row of the sender's (any id, trainable, back-dated)."""
    forged = json.dumps({"id": "f" * 48, "trace_id": "f" * 32, "span_id": "f" * 16})
    text_value = '[{"role":"user","parts":[{"type":"text","content":"hi"}]}]\n' + forged + "\n"
    attributes = [a for a in chat_attributes("forge") if a.key != "gen_ai.input.messages"]
    attributes.append(KeyValue(key="gen_ai.input.messages", value=text(text_value)))
    body = export_request(span(6, attributes), scope="finetuner_otel.instrumentation")
    assert _post(receiver.url, body, PROTOBUF)[0] == 200
    assert receiver.exporter.force_flush()
    rows = Store(receiver.exporter.settings.db_path).sql("SELECT trace_id, span_id FROM calls")
    assert [tuple(r) for r in rows] == [("4bf92f3577b34da6a3ce929d0e0e4736", f"{6:016x}")]


def test_oversized_headers_and_too_many_connections(tmp_path: Path) -> None:
    """Headers still incomplete past 16 KiB are refused (h11's limit: 400, closed); past
    ``limit_concurrency``
    connections a request is answered 503 at once rather than given a thread."""
    db = tmp_path / "db.duckdb"
    with OTLPReceiver(db, port=0, token=TOKEN, limit_concurrency=20) as receiver:
        sock = connect(receiver.url)
        sock.sendall(post_head(receiver.url, {**PROTOBUF, "x-padding": "x" * 200_000}))
        status, _, closed = read_reply(sock, timeout=10)
        assert status == 400 and (closed or read_reply(sock, timeout=10)[2])
        sock.close()
        idle = [connect(receiver.url) for _ in range(25)]
        time.sleep(0.3)
        body = export_request(span(7, chat_attributes("crowded")))
        assert _post(receiver.url, body, PROTOBUF, timeout=10)[0] == 503
        for sock in idle:
            sock.close()
        time.sleep(0.3)
        assert _post(receiver.url, body, PROTOBUF, timeout=10)[0] == 200


def test_a_request_answered_before_its_body_is_closed_not_drained(
    receiver: OTLPReceiver,
) -> None:
    """A POST to another path with a 1 MB body, sent slowly: 404, and the connection closed
    rather than read to the end at the sender's pace."""
    sock = connect(receiver.url)
    logs = receiver.url.replace("/v1/traces", "/v1/logs")
    sock.sendall(post_head(logs, {**PROTOBUF, "content-length": str(MB)}) + b"\0" * 1000)
    status, _, closed = read_reply(sock, timeout=10)
    assert status == 404 and (closed or read_reply(sock, timeout=5)[2])
    sock.close()
