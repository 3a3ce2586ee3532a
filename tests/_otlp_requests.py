"""OTLP trace export requests built by hand (protobuf), for the receiver's attack and fuzz tests,
and a raw-socket client that can send what no well-behaved HTTP client would."""

from __future__ import annotations

import json
import socket
import time
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

OUR_SCOPE = "finetuner_otel.instrumentation"
TRACE_ID = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")


def text(value: str) -> AnyValue:
    return AnyValue(string_value=value)


def chat_attributes(dataset: str = "otlp", answer: str = "yo") -> list[KeyValue]:
    """The attributes that make a span one trainable ``calls`` row."""
    messages = [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]
    output = [
        {
            "role": "assistant",
            "finish_reason": "stop",
            "parts": [{"type": "text", "content": answer}],
        }
    ]
    return [
        KeyValue(key="gen_ai.operation.name", value=text("chat")),
        KeyValue(key="gen_ai.request.model", value=text("m")),
        KeyValue(key="finetuner.dataset", value=text(dataset)),
        KeyValue(key="gen_ai.input.messages", value=text(json.dumps(messages))),
        KeyValue(key="gen_ai.output.messages", value=text(json.dumps(output))),
    ]


def span(
    span_id: int, attributes: list[KeyValue], *, trace_id: bytes = TRACE_ID, name: str = "chat m"
) -> Span:
    return Span(
        trace_id=trace_id,
        span_id=span_id.to_bytes(8, "big"),
        name=name,
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=1_764_201_600_000_000_000 + span_id,
        end_time_unix_nano=1_764_201_601_000_000_000 + span_id,
        attributes=attributes,
    )


def export_request(*spans: Span, scope: str = "some.genai.instrumentation") -> bytes:
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=[KeyValue(key="service.name", value=text("svc"))]),
                scope_spans=[ScopeSpans(scope=InstrumentationScope(name=scope), spans=spans)],
            )
        ]
    )
    return bytes(request.SerializeToString())


def nested_kvlist(levels: int, leaf: str = '"' * 16) -> AnyValue:
    """``levels`` key-value lists, one inside the other: each level of JSON text re-escaped
    inside its parent's doubles the quotes and backslashes (2**30 times the leaf at 30)."""
    value = text(leaf)
    for _ in range(levels):
        value = AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="k", value=value)]))
    return value


def kvlist_bomb(levels: int = 30) -> bytes:
    """The request of the issue: one span whose attribute is ``levels`` nested key-value lists."""
    bomb = KeyValue(key="bomb", value=nested_kvlist(levels))
    return export_request(span(1, [*chat_attributes("bomb"), bomb]))


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def post_head(url: str, headers: dict[str, str]) -> bytes:
    """The request line and headers of a POST to ``url``, as bytes on the wire."""
    parts = urlsplit(url)
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def connect(url: str, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(address(url), timeout=timeout)


def read_reply(sock: socket.socket, timeout: float = 10.0) -> tuple[int | None, bytes, bool]:
    """(status or None, what came back, whether the server closed the connection) within
    ``timeout`` seconds."""
    sock.settimeout(timeout)
    data = b""
    closed = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except (ConnectionResetError, BrokenPipeError):
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep and _complete(head, rest):
            break
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None
    return status, data, closed


def _complete(head: bytes, rest: bytes) -> bool:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(rest) >= int(value.strip())
    return False


def stats(process: Any, command: str = "stats") -> dict[str, Any]:
    """One line of numbers from ``tests/_receiver_child.py``."""
    process.stdin.write(command + "\n")
    process.stdin.flush()
    return dict(json.loads(process.stdout.readline()))


def empty_messages_bomb(kind: str, count: int = 8_000_000) -> bytes:
    """Millions of empty messages in one body, each 2 or 3 bytes on the wire (protobuf: empty
    ResourceSpans; OTLP/JSON: empty attributes), each an object to decode."""
    if kind == "json":
        attributes = b",".join([b"{}"] * (count * 2 // 3))
        return b'{"resourceSpans":[{"resource":{"attributes":[' + attributes + b"]}}]}"
    return b"\x0a\x00" * count  # field 1 (resource_spans), length 0
