"""``finetuner serve``: an OTLP/HTTP trace receiver that writes GenAI spans into the store.

Many hosts export with the standard OTLP exporter (usually through an OpenTelemetry Collector)
to one receiver, which hands the spans to the same DuckDB exporter ``instrument()`` uses: a span
is durable in the spool before the request is answered 200. ``POST /v1/traces`` takes
``application/x-protobuf`` or ``application/json`` (OTLP/JSON: hex ids), optionally gzip-encoded.
Needs the ``[serve]`` extra (``pip install 'finetuner-otel[serve]'``): Starlette on uvicorn.

Built to face the network (each guard is a test in ``tests/test_serve_attacks.py``):

- off the loopback a bearer token is required (``--token`` or ``FINETUNER_SERVE_TOKEN``); it is
  checked with ``hmac.compare_digest`` before any byte of the body is read (401);
- the body is read as it arrives and refused (413) the moment it passes ``max_body`` bytes, and
  so is a gzip body whose inflated size passes it (inflated incrementally, never past the cap);
- a request's headers must arrive within ``read_timeout`` seconds, every piece of its body within
  ``read_timeout`` of the last and the whole body within ``6 * read_timeout`` (else 408 and the
  connection is closed); connections are asyncio's, not a thread each, up to
  ``limit_concurrency`` (then 503);
- the bodies held in memory at once are bounded (``4 * max_body``, at least 64 MiB; past it new
  requests get 503 and ``Retry-After``), and so are the decodes running at once (2, in threads,
  off the event loop, each within its budget of decoded characters, ``8 * max_body``);
- decoding is bounded in depth and in output (see ``finetuner_otel._otlp``): a payload that does
  not parse is a 400 with a message, one that decodes too large a 413.
"""

from __future__ import annotations

import hmac
import json
import logging
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _otlp
from ._errors import ConfigurationError
from ._http import UvicornServer, is_loopback, listen, url_host
from ._otlp import BadPayload, DecodedTooLarge
from ._otlp_decode import decode_request
from ._settings import Lake

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

logger = logging.getLogger("finetuner_otel.serve")

DEFAULT_MAX_BODY = 16 * 1024 * 1024
READ_TIMEOUT = 10.0
# The decoded spans of one request, in characters, may come to this many times max_body (at
# least MIN_DECODED): a span pays for its resource too, so small spans of a large resource count
# many times over, as their rows would.
DECODED_FACTOR = 8
MIN_DECODED = 64 * 1024 * 1024
MIN_BUFFERED = 64 * 1024 * 1024
DECODE_THREADS = 2
_USAGE = b"POST OTLP traces to /v1/traces"


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


class _Busy(Exception):
    pass


class _Disconnected(Exception):
    pass


class _Body:
    """The body as it arrives: at most ``limit`` bytes, inflated on the way when gzipped."""

    def __init__(self, limit: int, gzipped: bool) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.wire = 0
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None

    def add(self, chunk: bytes) -> int:
        """Take one chunk; the bytes it added to memory. Raises _TooLarge past the limit."""
        if self._inflater is None:
            return self._keep(chunk)
        self.wire += len(chunk)  # empty deflate blocks inflate to nothing: cap the input too
        if self.wire > self.limit:
            raise _TooLarge
        added = 0
        while chunk:
            try:
                out = self._inflater.decompress(chunk, self.limit - self.size + 1)
            except zlib.error as exc:
                raise BadPayload(f"the body is not gzip: {exc}") from None
            added += self._keep(out)
            chunk = self._inflater.unconsumed_tail
            if self._inflater.eof and self._inflater.unused_data:  # another gzip member
                chunk = self._inflater.unused_data
                self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return added

    def _keep(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self.limit:
            raise _TooLarge
        if data:
            self.parts.append(data)
        return len(data)

    def bytes(self) -> bytes:
        if self._inflater is not None and not self._inflater.eof:
            raise BadPayload("the gzip body ends before its end (truncated)")
        return b"".join(self.parts)


class OTLPReceiver:
    """The receiver: ``start()`` in a thread, or ``serve_forever()``; ``stop()`` flushes.

    The socket is bound when it is made (port 0: a free one; ``url`` says which). ``token`` is
    required unless ``host`` is a loopback address."""

    def __init__(
        self,
        db: str | Path | Lake | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 4318,
        token: str | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        spool_dir: str | Path | None = None,
        read_timeout: float = READ_TIMEOUT,
        limit_concurrency: int = 1024,
    ) -> None:
        _check_options(host, token, max_body, read_timeout)
        _otlp.check_available()  # fail now, not on the first request
        app = _app(self)
        from .exporters import DuckDBSpanExporter

        self.token = token
        self.max_body = max_body
        self.read_timeout = read_timeout
        self.decoded_budget = max(DECODED_FACTOR * max_body, MIN_DECODED)
        self.buffered_limit = max(4 * max_body, MIN_BUFFERED)
        self.accepted = 0
        self.refused = 0
        self._buffered = 0  # body bytes held by requests now, all together (event loop only)
        self._limiter: Any = None
        self._host = host
        self._expected = f"Bearer {token}".encode() if token is not None else b""
        listener = listen(host, port, what="finetuner serve")
        try:
            self.exporter = DuckDBSpanExporter(db, spool_dir=spool_dir)
        except BaseException:
            listener.close()
            raise
        self._server = UvicornServer(
            app,
            listener,
            "finetuner-serve",
            header_timeout=read_timeout,
            limit_concurrency=limit_concurrency,
        )
        self._stopped = False

    @property
    def url(self) -> str:
        return f"http://{url_host(self._host)}:{self._server.port}/v1/traces"

    def start(self) -> OTLPReceiver:
        self._server.start()
        return self

    def serve_forever(self) -> None:
        try:
            self._server.serve_forever()
        finally:
            self.stop()

    def stop(self) -> None:
        self._server.stop()
        if not self._stopped:
            self._stopped = True
            self.exporter.shutdown()

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def authorised(self, authorization: bytes) -> bool:
        """Whether an ``authorization`` header value carries the token (always, with none)."""
        if self.token is None:
            return True
        return hmac.compare_digest(authorization, self._expected)

    def refusal(self, status: int, message: str, *, close: bool = False) -> Response:
        """A JSON error response (``{"code", "message"}``), counted in ``refused``. ``close``:
        the body was not read, so the connection is closed rather than drained."""
        from starlette.responses import Response as Reply

        self.refused += 1
        headers = {"connection": "close"} if close else {}
        if status == 503:
            headers["retry-after"] = "1"
        body = json.dumps({"code": status, "message": message}).encode()
        return Reply(body, status, headers=headers, media_type="application/json")

    def export(self, body: bytes, content_type: str) -> tuple[int, str]:
        """Decode one request body and export its spans: (200, number of spans), or (an error
        status, its message). Runs in a thread, off the event loop."""
        from opentelemetry.sdk.trace.export import SpanExportResult

        try:
            spans = decode_request(body, content_type, self.decoded_budget)
        except DecodedTooLarge as exc:
            return 413, str(exc)
        except BadPayload as exc:
            return 400, str(exc)
        del body
        if spans and self.exporter.export(spans) is not SpanExportResult.SUCCESS:
            return 503, "the spool could not be written; retry"
        return 200, str(len(spans))


def _check_options(host: str, token: str | None, max_body: int, read_timeout: float) -> None:
    if token is not None and not token:
        raise ConfigurationError(
            "finetuner serve: the token is empty; pass a long random one (--token or "
            "FINETUNER_SERVE_TOKEN), or none on a loopback host"
        )
    if token is None and not is_loopback(host):
        raise ConfigurationError(
            f"finetuner serve on {host} (not a loopback address) needs a bearer token, or anyone "
            f"who can reach it writes your store: pass --token or set FINETUNER_SERVE_TOKEN "
            f"(OTLPReceiver(token=...)), or serve on 127.0.0.1 behind your own proxy"
        )
    if not isinstance(max_body, int) or max_body <= 0:
        raise ConfigurationError(f"max_body must be a positive number of bytes, got {max_body!r}")
    if not read_timeout > 0:
        raise ConfigurationError(f"read_timeout must be positive seconds, got {read_timeout!r}")


def _missing(exc: ImportError) -> ConfigurationError:
    return ConfigurationError(
        f"finetuner serve needs its extra ({exc.name} is not installed): "
        f"pip install 'finetuner-otel[serve]'"
    )


def _app(receiver: OTLPReceiver) -> Any:
    """The ASGI app: ``POST /v1/traces`` and nothing else."""
    try:
        import uvicorn  # noqa: F401  (checked here, used by the server)
        from starlette.applications import Starlette
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route
    except ImportError as exc:
        raise _missing(exc) from exc

    async def traces(request: Request) -> Response:
        try:
            return await _traces(receiver, request)
        except Exception:  # never a traceback page; the reason goes to the log
            logger.exception("finetuner serve: request failed")
            return receiver.refusal(500, "internal error; see the receiver's log", close=True)

    async def usage(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        return PlainTextResponse(_USAGE, 405 if status == 405 else 404)

    return Starlette(
        routes=[
            Route("/v1/traces", traces, methods=["POST"]),
            Route("/v1/traces/", traces, methods=["POST"]),
        ],
        exception_handlers={404: usage, 405: usage},
    )


async def _traces(receiver: OTLPReceiver, request: Request) -> Response:
    """One POST: headers checked first, then the body read under its limits, then decoded and
    exported in a thread."""
    import anyio
    from starlette.responses import Response as Reply

    headers = request.headers
    refuse = receiver.refusal
    # Before any byte of the body; an unread body is not drained: the connection is closed.
    if not receiver.authorised(headers.get("authorization", "").encode("latin-1")):
        return refuse(401, "missing or wrong bearer token", close=True)
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "", "gzip"):
        return refuse(
            400, f"unsupported content-encoding {encoding!r}; send gzip or none", close=True
        )
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > receiver.max_body:
        return refuse(413, _too_large(receiver), close=True)
    try:
        body = await _read_body(receiver, request, gzipped=encoding == "gzip")
    except _TooLarge:
        return refuse(413, _too_large(receiver), close=True)
    except _TooSlow:
        return refuse(408, "the body came too slowly", close=True)
    except _Busy:
        return refuse(503, "too many requests in flight; retry", close=True)
    except BadPayload as exc:
        return refuse(400, str(exc), close=True)
    except _Disconnected:
        return Reply(status_code=400)  # nobody is there to read it
    content_type = headers.get("content-type", "application/x-protobuf")
    receiver._buffered += len(body)
    try:
        if receiver._limiter is None:
            receiver._limiter = anyio.CapacityLimiter(DECODE_THREADS)
        status, detail = await anyio.to_thread.run_sync(
            receiver.export, body, content_type, limiter=receiver._limiter
        )
    finally:
        receiver._buffered -= len(body)
    if status != 200:
        return refuse(status, detail)
    receiver.accepted += int(detail)
    if content_type.split(";", 1)[0].strip().lower() == "application/json":
        return Reply(b"{}", 200, media_type="application/json")
    return Reply(_otlp.empty_response(), 200, media_type="application/x-protobuf")


def _too_large(receiver: OTLPReceiver) -> str:
    return f"the request is over {receiver.max_body} bytes (uncompressed too)"


async def _read_body(receiver: OTLPReceiver, request: Request, *, gzipped: bool) -> bytes:
    """The body, read as it arrives under the size limit, the read timeouts and the bound on
    what all requests hold in memory together."""
    import anyio

    body = _Body(receiver.max_body, gzipped)
    idle = receiver.read_timeout
    held = 0
    try:
        with anyio.fail_after(6 * idle):
            while True:
                with anyio.fail_after(idle):
                    message = await request.receive()
                if message["type"] == "http.disconnect":
                    raise _Disconnected
                added = body.add(message.get("body", b""))
                held += added
                receiver._buffered += added
                if receiver._buffered > receiver.buffered_limit:
                    raise _Busy
                if not message.get("more_body", False):
                    return body.bytes()
    except TimeoutError:
        raise _TooSlow from None
    finally:
        receiver._buffered -= held
