"""``finetuner ui``: look at, curate and compare in the browser (the ``[ui]`` extra).

``create_app(db)`` is the ASGI app; ``serve(db)`` runs it with uvicorn, as ``finetuner ui``
does. Reading works with JavaScript off (the pages have none); writes are forms.
"""

from __future__ import annotations

from collections.abc import Callable
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
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the app until interrupted. ``on_ready(url)`` is called once it listens."""
    try:
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise _missing(exc) from exc
    from .._http import UvicornServer, listen
    from ._app import url

    app = create_app(db, host=host, read_only=read_only, token=token)
    # Bound first, so a port in use is one clear error rather than uvicorn's exit.
    listener = listen(host, port, what="finetuner ui")
    announce = None if on_ready is None else (lambda bound: on_ready(url(host, bound, token)))
    server = UvicornServer(app, listener, "finetuner ui", on_ready=announce)
    try:
        server.serve_forever()
    finally:
        listener.close()
