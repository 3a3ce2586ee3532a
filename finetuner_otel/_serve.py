"""``finetuner serve``: an OTLP/HTTP trace receiver that writes GenAI spans into the store.

Many hosts export with the standard OTLP exporter (usually through an OpenTelemetry Collector)
to one receiver, which hands the spans to the same DuckDB exporter ``instrument()`` uses: a span
is durable in the spool before the request is answered 200. ``POST /v1/traces`` takes
``application/x-protobuf`` or ``application/json`` (OTLP/JSON: hex ids), optionally gzip-encoded;
a request over ``max_body`` bytes (after decompression too) is refused with 413, a payload that
does not parse with 400 and a message, a missing or wrong bearer token (when one is set) with 401.
Needs ``opentelemetry-proto`` (``pip install 'finetuner-otel[serve]'``).
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import logging
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from ._errors import ConfigurationError

logger = logging.getLogger("finetuner_otel.serve")

DEFAULT_MAX_BODY = 16 * 1024 * 1024
_ID_KEYS = ("traceId", "spanId", "parentSpanId")
_KINDS = {
    1: SpanKind.INTERNAL,
    2: SpanKind.SERVER,
    3: SpanKind.CLIENT,
    4: SpanKind.PRODUCER,
    5: SpanKind.CONSUMER,
}
_STATUS = {0: StatusCode.UNSET, 1: StatusCode.OK, 2: StatusCode.ERROR}


class BadPayload(ValueError):
    """The request body is not an OTLP trace export."""


def _proto() -> Any:
    try:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    except ImportError:
        raise ConfigurationError(
            "finetuner serve needs opentelemetry-proto: pip install 'finetuner-otel[serve]'"
        ) from None
    return trace_service_pb2


def _hex_ids_to_base64(value: Any) -> Any:
    """OTLP/JSON writes ids as hex; protobuf's JSON mapping reads bytes as base64."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in _ID_KEYS and isinstance(item, str):
                try:
                    item = base64.b64encode(bytes.fromhex(item)).decode()
                except ValueError:
                    raise BadPayload(f"{key} {item!r} is not hex") from None
            out[key] = _hex_ids_to_base64(item)
        return out
    if isinstance(value, list):
        return [_hex_ids_to_base64(v) for v in value]
    return value


def parse_request(body: bytes, content_type: str) -> Any:
    """An ExportTraceServiceRequest from a protobuf or OTLP/JSON body."""
    pb = _proto()
    request = pb.ExportTraceServiceRequest()
    kind = content_type.split(";", 1)[0].strip().lower()
    try:
        if kind == "application/json":
            from google.protobuf import json_format

            json_format.ParseDict(_hex_ids_to_base64(json.loads(body)), request)
        elif kind in ("application/x-protobuf", "application/protobuf", ""):
            request.ParseFromString(body)
        else:
            raise BadPayload(
                f"unsupported content-type {content_type!r}; send application/x-protobuf or "
                f"application/json"
            )
    except BadPayload:
        raise
    except Exception as exc:
        raise BadPayload(f"not an OTLP trace export: {type(exc).__name__}: {exc}") from None
    return request


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        items = [_value(v) for v in any_value.array_value.values]
        return tuple(i for i in items if isinstance(i, str | bool | int | float))
    if kind == "kvlist_value":
        return json.dumps({kv.key: _value(kv.value) for kv in any_value.kvlist_value.values})
    if kind == "bytes_value":
        return base64.b64encode(any_value.bytes_value).decode()
    return getattr(any_value, kind)


def _attributes(key_values: Any) -> dict[str, Any]:
    out = {}
    for kv in key_values:
        value = _value(kv.value)
        if value is not None:
            out[kv.key] = value
    return out


def spans_of(request: Any) -> Iterator[ReadableSpan]:
    """The request's spans as SDK ReadableSpans, resource and scope included."""
    for resource_spans in request.resource_spans:
        resource = Resource(_attributes(resource_spans.resource.attributes))
        for scope_spans in resource_spans.scope_spans:
            scope = InstrumentationScope(scope_spans.scope.name, scope_spans.scope.version or None)
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    raise BadPayload(f"span {span.name!r} has no valid trace or span id")
                trace_id = int.from_bytes(span.trace_id, "big")
                context = SpanContext(
                    trace_id,
                    int.from_bytes(span.span_id, "big"),
                    is_remote=False,
                    trace_flags=TraceFlags(TraceFlags.SAMPLED),
                )
                parent = (
                    SpanContext(trace_id, int.from_bytes(span.parent_span_id, "big"), True)
                    if len(span.parent_span_id) == 8
                    else None
                )
                yield ReadableSpan(
                    name=span.name,
                    context=context,
                    parent=parent,
                    resource=resource,
                    attributes=_attributes(span.attributes),
                    kind=_KINDS.get(span.kind, SpanKind.INTERNAL),
                    status=Status(
                        _STATUS.get(span.status.code, StatusCode.UNSET),
                        span.status.message or None,
                    ),
                    start_time=span.start_time_unix_nano,
                    end_time=span.end_time_unix_nano or span.start_time_unix_nano,
                    instrumentation_scope=scope,
                )


def _gunzip(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadPayload(f"the body is not gzip: {exc}") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise _TooLarge
    return data


class _TooLarge(Exception):
    pass


class OTLPReceiver:
    """The receiver: ``start()`` in a thread, or ``serve_forever()``; ``stop()`` flushes."""

    def __init__(
        self,
        db: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 4318,
        token: str | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        spool_dir: str | Path | None = None,
    ) -> None:
        from .exporters import DuckDBSpanExporter

        _proto()  # fail now, not on the first request
        self.exporter = DuckDBSpanExporter(db, spool_dir=spool_dir)
        self.token = token
        self.max_body = max_body
        self.accepted = 0
        self.refused = 0
        self._httpd = ThreadingHTTPServer((host, port), _handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1/traces"

    def start(self) -> OTLPReceiver:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="finetuner-serve", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        try:
            self._httpd.serve_forever()
        finally:
            self.stop()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()
        self.exporter.shutdown()

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        """(status, content type, body) for one POST /v1/traces."""
        json_reply = headers.get("content-type", "").startswith("application/json")

        def error(status: int, message: str) -> tuple[int, str, bytes]:
            self.refused += 1
            payload = json.dumps({"code": status, "message": message}).encode()
            return status, "application/json", payload

        if self.token is not None:
            given = headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                return error(401, "missing or wrong bearer token")
        try:
            if headers.get("content-encoding", "").lower() == "gzip":
                body = _gunzip(body, self.max_body)
            request = parse_request(body, headers.get("content-type", "application/x-protobuf"))
            spans = list(spans_of(request))
        except _TooLarge:
            return error(413, f"the request is over {self.max_body} bytes uncompressed")
        except BadPayload as exc:
            return error(400, str(exc))
        from opentelemetry.sdk.trace.export import SpanExportResult

        if spans and self.exporter.export(spans) is not SpanExportResult.SUCCESS:
            return error(503, "the spool could not be written; retry")
        self.accepted += len(spans)
        if json_reply:
            return 200, "application/json", b"{}"
        return (
            200,
            "application/x-protobuf",
            _proto().ExportTraceServiceResponse().SerializeToString(),
        )


def _handler(receiver: OTLPReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("%s " + format, self.client_address[0], *args)

        def _reply(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            try:
                if self.path.split("?", 1)[0].rstrip("/") != "/v1/traces":
                    self.close_connection = True
                    self._reply(404, "text/plain", b"POST OTLP traces to /v1/traces")
                    return
                try:
                    length = int(self.headers.get("content-length") or -1)
                except ValueError:
                    length = -1
                if length < 0:
                    self.close_connection = True
                    self._reply(411, "text/plain", b"a content-length is required")
                    return
                if length > receiver.max_body:
                    self.close_connection = True  # the body is not read: drop the connection
                    self._reply(413, "text/plain", b"request too large")
                    return
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                self._reply(*receiver.handle(headers, body))
            except Exception:  # never crash the server on one request
                logger.exception("finetuner serve: request failed")
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self._reply(500, "text/plain", b"internal error")

        def do_GET(self) -> None:
            self._reply(
                405 if self.path.startswith("/v1/traces") else 404,
                "text/plain",
                b"POST OTLP traces to /v1/traces",
            )

    return Handler
