"""The ``finetuner ui`` web app: server-rendered pages over one store (Starlette + Jinja2).

Every page reads with the store's own short connections, and every write goes through the
store's API (``accept``, ``reject``, ``correct``, ``prefer``), so the app holds the file no
longer than the CLI would and writes the same feedback records.

Safety: the templates escape everything they are given; a Content-Security-Policy allows no
script at all and no image but inline ``data:`` ones; the Host header must name the address the
app serves (no DNS rebinding); with a token, each request carries it (a cookie set from the
printed URL); every write carries the app's CSRF token and must come from the app's own origin.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .._errors import CallNotFoundError, ConfigurationError, FinetunerError
from ..eval import Comparison, load_run
from .._html import accuracy_chart, word_diff
from ..store import Store
from . import _queries as q

TOKEN_COOKIE = "finetuner_ui_token"
_MAX_FORM_BYTES = 1024 * 1024
_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
_IMAGE_DATA = ("data:image/png", "data:image/jpeg", "data:image/gif", "data:image/webp")


class UIError(Exception):
    """A request the app refuses: shown as a page with ``status`` and the message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _pretty(value: Any) -> str:
    """JSON text indented for reading; text stays as it is."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        if isinstance(parsed, str):  # a plain string that happens to be JSON text: as sent
            return value
        value = parsed
    return json.dumps(value, indent=2, ensure_ascii=False)


def _image_url(part: Any) -> str | None:
    """An inline image's data URL (the only images the page shows; others are links)."""
    if not isinstance(part, dict) or part.get("type") != "image_url":
        return None
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if isinstance(url, str) and url.startswith(_IMAGE_DATA) and ";base64," in url[:40]:
        return url
    return None


class App:
    """The pages of one store."""

    def __init__(
        self,
        store: Store,
        *,
        read_only: bool = False,
        token: str | None = None,
        host: str = "127.0.0.1",
        encoding: Any = None,
    ) -> None:
        if not _loopback(host) and not token:
            raise ConfigurationError(
                f"finetuner ui on {host} would show captured prompts to the network; pass "
                f"--token (or set FINETUNER_UI_TOKEN), or bind to 127.0.0.1"
            )
        self.store = store
        self.read_only = read_only
        self.token = token
        self.host = host
        self.encoding = encoding  # for the validation page's token counts (tests pass one)
        self.csrf = secrets.token_urlsafe(32)
        self.env = Environment(
            loader=PackageLoader("finetuner_otel.ui", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["pretty"] = _pretty
        self.env.filters["image_url"] = _image_url
        self.env.filters["pct"] = lambda v: "" if v is None else f"{v:.1%}"
        self.env.filters["num"] = lambda v: "" if v is None else f"{v:,}"
        self.env.filters["when"] = lambda v: "" if v is None else str(v)[:19]
        self.env.globals["urlencode"] = urlencode

    # --- plumbing -----------------------------------------------------------------------------

    def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> Response:
        page = self.env.get_template(template).render(
            request=request,
            read_only=self.read_only,
            csrf=self.csrf,
            store_path=str(self.store.path),
            **context,
        )
        return HTMLResponse(page, status_code=status)

    def allowed_host(self, request: Request) -> bool:
        if self.host in ("0.0.0.0", "::"):
            return True  # bound to every address: the token guards it
        try:
            named = urlsplit("//" + request.headers.get("host", "")).hostname or ""
        except ValueError:
            return False
        return named == self.host.strip("[]").lower() or _loopback(named)

    def authorised(self, request: Request) -> bool:
        if not self.token:
            return True
        given = request.cookies.get(TOKEN_COOKIE) or ""
        bearer = request.headers.get("authorization", "")
        if bearer.lower().startswith("bearer "):
            given = bearer[7:].strip()
        return hmac.compare_digest(given.encode(), self.token.encode())

    async def form(self, request: Request) -> dict[str, str]:
        """A write's form, after the checks every write passes."""
        if self.read_only:
            raise UIError(403, "this app was started with --read-only; nothing can be changed")
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            raise UIError(403, f"a write from another origin ({origin}) was refused")
        if request.headers.get("sec-fetch-site") not in (None, "same-origin", "none"):
            raise UIError(403, "a write from another site was refused")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > _MAX_FORM_BYTES:
            raise UIError(413, "the form is over 1 MB")
        body = await request.body()
        if len(body) > _MAX_FORM_BYTES:
            raise UIError(413, "the form is over 1 MB")
        fields = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if not hmac.compare_digest(fields.get("csrf", "").encode(), self.csrf.encode()):
            raise UIError(
                403,
                "the form's CSRF token is missing or stale (the app was restarted?); "
                "reload the page and try again",
            )
        return fields

    # --- pages --------------------------------------------------------------------------------

    def datasets(self, request: Request) -> Response:
        store_exists = self.store.path.exists() or self.store.pending() > 0
        rows = q.datasets(self.store) if store_exists else []
        return self.render(request, "datasets.html", datasets=rows, store_exists=store_exists)

    def dataset(self, request: Request) -> Response:
        name = request.path_params["name"]
        self._need_dataset(name)
        filters = q.Filters.parse(request.query_params)
        page = q.examples_page(
            self.store,
            name,
            filters,
            older_than=request.query_params.get("older"),
            newer_than=request.query_params.get("newer"),
        )
        return self.render(
            request,
            "dataset.html",
            name=name,
            page=page,
            facets=q.facets(self.store, name),
            feedback_filters=list(q.FEEDBACK_FILTERS),
            statuses=q.STATUSES,
        )

    def validation(self, request: Request) -> Response:
        name = request.path_params["name"]
        self._need_dataset(name)
        report = self.store.get_dataset(name).validate(encoding=self.encoding)
        return self.render(request, "validation.html", name=name, report=report)

    def call(self, request: Request) -> Response:
        row = q.call(self.store, request.path_params["call_id"])
        if row is None:
            raise UIError(404, f"no call with id {request.path_params['call_id']!r} in the store")
        return self.render(request, "call.html", call=row, done=request.query_params.get("done"))

    async def feedback(self, request: Request) -> Response:
        call_id = request.path_params["call_id"]
        fields = await self.form(request)
        action = fields.get("action", "")
        note = fields.get("note", "").strip() or None
        text = fields.get("completion", "")
        store = self.store
        actions: dict[str, Callable[[], None]] = {
            "accept": lambda: store.accept(call_id, note),
            "reject": lambda: store.reject(call_id, note),
            "correct": lambda: store.correct(call_id, text, note),
            "prefer": lambda: store.prefer(call_id, text, note=note),
        }
        if action not in actions:
            raise UIError(400, f"unknown action {action!r}; one of {', '.join(actions)}")
        if action in ("correct", "prefer") and not text.strip():
            raise UIError(400, f"{action} needs the answer's text; the box was empty")
        try:
            await run_in_threadpool(actions[action])
        except CallNotFoundError as exc:
            raise UIError(404, str(exc)) from exc
        return RedirectResponse(f"/calls/{call_id}?{urlencode({'done': action})}", status_code=303)

    def jobs(self, request: Request) -> Response:
        return self.render(request, "jobs.html", jobs=q.jobs(self.store))

    def job(self, request: Request) -> Response:
        provider, job_id = request.path_params["provider"], request.path_params["job_id"]
        row = q.job(self.store, provider, job_id)
        if row is None:
            raise UIError(404, f"no {provider} job {job_id!r} in the store")
        return self.render(request, "job.html", job=row)

    def evals(self, request: Request) -> Response:
        runs = q.eval_runs(self.store)
        chart = (
            accuracy_chart(
                [
                    (
                        f"{r['model']} ({r['eval']})",
                        r["accuracy"] or 0.0,
                        r["ci_low"] or 0.0,
                        r["ci_high"] or 0.0,
                    )
                    for r in reversed(runs[:20])
                ]
            )
            if runs
            else ""
        )
        return self.render(request, "evals.html", runs=runs, chart=Markup(chart))

    def eval_run(self, request: Request) -> Response:
        run = self._run(request.path_params["run_id"])
        return self.render(request, "eval_run.html", run=run)

    def compare(self, request: Request) -> Response:
        a, b = request.query_params.get("a"), request.query_params.get("b")
        if not a or not b:
            raise UIError(400, "pick two runs to compare (a= and b=)")
        baseline, candidate = self._run(a), self._run(b)
        comparison = Comparison.of(baseline, candidate)
        only = request.query_params.get("only") == "disagreements"
        pairs = comparison.disagreements if only else comparison.pairs
        rows = [
            {
                "position": x.position,
                "example_id": x.example_id,
                "target": x.target,
                "baseline": x,
                "candidate": y,
                "baseline_diff": Markup(word_diff(x.target, x.prediction)),
                "candidate_diff": Markup(word_diff(x.target, y.prediction)),
                "changed": x.passed != y.passed,
            }
            for x, y in pairs
        ]
        return self.render(
            request, "compare.html", comparison=comparison, rows=rows, only=only, a=a, b=b
        )

    def _run(self, run_id: str) -> Any:
        try:
            return load_run(self.store, run_id)
        except ConfigurationError as exc:
            raise UIError(404, str(exc)) from exc

    def _need_dataset(self, name: str) -> None:
        if not q.dataset_exists(self.store, name):
            raise UIError(404, f"no dataset {name!r} in the store")


def create_app(
    db: str | Path | Store,
    *,
    read_only: bool = False,
    token: str | None = None,
    host: str = "127.0.0.1",
    encoding: Any = None,
) -> Starlette:
    """The ASGI app of ``finetuner ui`` for the store ``db`` (serve it with any ASGI server)."""
    store = db if isinstance(db, Store) else Store(db)
    ui = App(store, read_only=read_only, token=token, host=host, encoding=encoding)

    def page(handler: Callable[[Request], Any]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                result = handler(request)
                if isinstance(result, Awaitable):
                    return await result  # type: ignore[no-any-return]
                return result  # type: ignore[no-any-return]
            except UIError as exc:
                return ui.render(request, "error.html", exc.status, message=str(exc))
            except (FinetunerError, ValueError) as exc:
                return ui.render(request, "error.html", 400, message=str(exc))

        return endpoint

    def threaded(handler: Callable[[Request], Response]) -> Callable[[Request], Any]:
        return lambda request: run_in_threadpool(handler, request)

    routes = [
        Route("/", page(threaded(ui.datasets))),
        Route("/datasets/{name:path}/validation", page(threaded(ui.validation))),
        Route("/datasets/{name:path}", page(threaded(ui.dataset))),
        Route("/calls/{call_id}", page(threaded(ui.call))),
        Route("/calls/{call_id}/feedback", page(ui.feedback), methods=["POST"]),
        Route("/jobs", page(threaded(ui.jobs))),
        Route("/jobs/{provider}/{job_id:path}", page(threaded(ui.job))),
        Route("/evals", page(threaded(ui.evals))),
        Route("/evals/compare", page(threaded(ui.compare))),
        Route("/evals/{run_id}", page(threaded(ui.eval_run))),
        Mount("/static", StaticFiles(packages=[("finetuner_otel.ui", "static")]), name="static"),
    ]

    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if not ui.allowed_host(request):
            return PlainTextResponse(
                "this app answers only to its own address (the Host header did not name it)",
                status_code=421,
            )
        token = request.query_params.get("token")
        if ui.token and token is not None:
            # The printed URL's token: kept as a cookie, and taken out of the address bar.
            if not hmac.compare_digest(token.encode(), ui.token.encode()):
                return PlainTextResponse("wrong token", status_code=401)
            rest = {k: v for k, v in request.query_params.items() if k != "token"}
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            response: Response = RedirectResponse(target, status_code=303)
            response.set_cookie(TOKEN_COOKIE, ui.token, httponly=True, samesite="strict")
        elif not ui.authorised(request):
            return PlainTextResponse(
                "this app needs its token: open the URL `finetuner ui` printed", status_code=401
            )
        else:
            response = await call_next(request)
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"  # "no-referrer" makes Origin null
        response.headers["X-Frame-Options"] = "DENY"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    app = Starlette(routes=routes, middleware=[Middleware(BaseHTTPMiddleware, dispatch=guard)])
    app.state.ui = ui
    return app


def url(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?{urlencode({'token': token})}" if token else "")
