"""One way to run an HTTP server in the background: bind, serve in a thread, stop and join.

``finetuner serve`` (uvicorn) and the local OpenAI server of ``finetuner_otel.testing`` (the
stdlib's ``http.server``, whose bytes on the wire the tests pin) do the same four things, and
``finetuner ui`` (uvicorn) can too, so they are done here once:

- ``listen(host, port)`` binds the socket before any server exists, so a port in use or a bad
  host is one ``ConfigurationError`` naming the fix, and port 0 is a free port known at once;
- ``UvicornServer(app, listener)`` and ``StdlibServer(server, listener)`` serve it, either in the
  calling thread (``serve_forever()``) or in a daemon thread (``start()`` returns once it
  accepts connections; ``stop()`` ends it and joins the thread).

``UvicornServer`` guards what uvicorn leaves open (measured: a connection that never finishes its
headers was held for ever): each request's headers must arrive within ``header_timeout``
seconds of the connection opening or of the previous response, headers still incomplete past
``max_header_bytes`` are refused (h11's limit), idle keep-alive connections close after
``keep_alive_timeout`` seconds, a request answered before its body has all come is closed (not
drained), and beyond ``limit_concurrency`` connections new requests are answered 503. Timeouts
on request bodies belong to the app, which reads them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from socketserver import BaseServer
from typing import Any

from ._errors import ConfigurationError

STARTUP_TIMEOUT = 10.0  # seconds for a server to start accepting connections


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (``localhost``, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_host(host: str) -> str:
    """``host`` as it is written in a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def listen(host: str, port: int, *, what: str, backlog: int = 2048) -> socket.socket:
    """A socket bound to ``host``:``port`` and listening (port 0: a free port, read it from
    ``getsockname()``). ``what`` names the server in the error, e.g. ``"finetuner serve"``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host.strip("[]"), port))
        listener.listen(backlog)
    except (OSError, OverflowError) as exc:
        listener.close()
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigurationError(
            f"{what} cannot listen on {host}:{port} ({reason}); check --host, or pass another "
            f"--port (--port 0 picks a free one)"
        ) from exc
    return listener


class _Background:
    """What both servers share: the listener, the thread, start/stop/serve_forever."""

    def __init__(self, listener: socket.socket, name: str) -> None:
        self.listener = listener
        self.name = name
        self.host, self.port = listener.getsockname()[:2]
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        raise NotImplementedError

    def _started(self) -> bool:
        raise NotImplementedError

    def _request_stop(self) -> None:
        raise NotImplementedError

    def serve_forever(self) -> None:
        """Serve in the calling thread until ``stop()`` (or Ctrl-C, in the main thread)."""
        self._run()

    def start(self) -> None:
        """Serve in a daemon thread; returns once connections are accepted."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._started():
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ConfigurationError(f"{self.name} did not start; see the log for why")
            time.sleep(0.005)

    def stop(self) -> None:
        """Stop serving, join the thread and close the listener (again: nothing)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._request_stop()
            thread.join()
        self.listener.close()


class StdlibServer(_Background):
    """A ``socketserver`` server (made with ``bind_and_activate=False``) on ``listener``."""

    def __init__(self, server: BaseServer, listener: socket.socket, name: str) -> None:
        super().__init__(listener, name)
        server.socket.close()  # type: ignore[attr-defined]  # made unbound; ours replaces it
        server.socket = listener  # type: ignore[attr-defined]
        server.server_address = listener.getsockname()
        self.server = server
        self._serving = threading.Event()

    def _run(self) -> None:
        self._serving.set()  # serve_forever() polls: a connection made now waits in the backlog
        self.server.serve_forever(poll_interval=0.05)

    def _started(self) -> bool:
        return self._serving.is_set()

    def _request_stop(self) -> None:
        self.server.shutdown()

    def stop(self) -> None:
        super().stop()
        self.server.server_close()


class UvicornServer(_Background):
    """An ASGI app served by uvicorn on ``listener``, with the guards of the module docstring.

    ``on_ready(port)`` is called once it accepts connections (in the serving thread)."""

    def __init__(
        self,
        app: Any,
        listener: socket.socket,
        name: str,
        *,
        header_timeout: float = 10.0,
        keep_alive_timeout: int = 5,
        max_header_bytes: int = 16 * 1024,
        limit_concurrency: int | None = 1024,
        on_ready: Callable[[int], None] | None = None,
    ) -> None:
        import uvicorn

        super().__init__(listener, name)
        config = uvicorn.Config(
            app,
            http=_guarded_h11(header_timeout),
            lifespan="off",
            log_config=None,  # leave the host application's logging as it is
            access_log=False,
            timeout_keep_alive=keep_alive_timeout,
            h11_max_incomplete_event_size=max_header_bytes,
            limit_concurrency=limit_concurrency,
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self._on_ready = on_ready

    def _run(self) -> None:
        if self._on_ready is not None:
            startup, on_ready, port = self.server.startup, self._on_ready, self.port

            async def announced(sockets: Any = None) -> None:
                await startup(sockets=sockets)
                if self.server.started:
                    on_ready(port)

            self.server.startup = announced  # type: ignore[method-assign]
        self.server.run(sockets=[self.listener])

    def _started(self) -> bool:
        return bool(self.server.started)

    def _request_stop(self) -> None:
        self.server.should_exit = True


def _guarded_h11(header_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with a deadline for each request's headers.

    uvicorn times out only idle keep-alive connections, and any byte received cancels that: a
    client sending its headers a byte at a time holds a connection for ever. Here the clock
    starts when the connection is idle (opened, or its last response sent) and stops when a
    request's headers are complete; at the deadline the connection is closed.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _update_header_timer(self) -> None:
            waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
            if waiting and self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout, self._headers_late)
            elif not waiting and self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._update_header_timer()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._update_header_timer()

        def on_response_complete(self) -> None:
            if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
                # Answered before its body came (a refusal, a 404): uvicorn would read and drop
                # the rest for as long as the sender takes. Closed instead.
                self.transport.close()
            super().on_response_complete()
            self._update_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().connection_lost(exc)

    return GuardedH11Protocol
