"""``finetuner ui``: look at, curate and compare in the browser (the ``[ui]`` extra).

``create_app(db)`` is the ASGI app; ``serve(db)`` runs it with uvicorn, as ``finetuner ui``
does. Reading works with JavaScript off (the pages have none); writes are forms.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from .._errors import ConfigurationError

__all__ = ["create_app", "serve"]


def _missing(exc: ImportError) -> ConfigurationError:
    return ConfigurationError(
        f"finetuner ui needs its extra ({exc.name} is not installed): "
        f"pip install 'finetuner-otel[ui]'"
    )


def create_app(db: Any, **options: Any) -> Any:
    """The ASGI app of ``finetuner ui`` over the store ``db`` (a path or a ``Store``); options:
    ``read_only``, ``token``, ``host`` (the address it is served on, which requests must name)."""
    try:
        from ._app import create_app as make
    except ImportError as exc:
        raise _missing(exc) from exc
    return make(db, **options)


def serve(
    db: str | Path | Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    read_only: bool = False,
    token: str | None = None,
    on_ready: Any = None,
) -> None:
    """Serve the app until interrupted. ``on_ready(url)`` is called once it listens."""
    try:
        import uvicorn
    except ImportError as exc:
        raise _missing(exc) from exc
    from ._app import url

    app = create_app(db, host=host, read_only=read_only, token=token)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    if on_ready is not None:
        startup = server.startup

        async def announced(sockets: Any = None) -> None:
            await startup(sockets=sockets)
            if server.started:
                bound = [s.getsockname()[1] for srv in server.servers for s in srv.sockets]
                on_ready(url(host, bound[0] if bound else port, token))

        server.startup = announced  # type: ignore[method-assign]
    # Bound here, so a port in use is a clear error rather than uvicorn's exit.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        raise ConfigurationError(
            f"finetuner ui cannot listen on {host}:{port} ({exc.strerror or exc}); check "
            f"--host, or pass another --port (--port 0 picks a free one)"
        ) from exc
    try:
        server.run(sockets=[listener])
    finally:
        listener.close()
