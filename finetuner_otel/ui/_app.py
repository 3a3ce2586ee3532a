"""The ``finetuner ui`` web app: server-rendered pages over one store (Starlette + Jinja2).

Every page reads with the store's own short connections, and every write goes through the
store's API (``accept``, ``reject``, ``correct``, ``prefer``), so the app holds the file no
longer than the CLI would and writes the same feedback records.

Safety: the templates escape everything they are given; a Content-Security-Policy allows no
script at all and no image but inline ``data:`` ones; the Host header must name the address the
app serves (no DNS rebinding); with a token, each request carries it (a cookie of this app,
HttpOnly and SameSite=Strict, set from the printed URL, whose redirect stays on the app); every
write carries the app's CSRF token, must come from the app's own origin, and its body is
refused past 1 MB as it arrives. ``read_only`` writes nothing at all: no feedback, no ingest of
the spool, no schema upgrade (a store that needs one gets a page saying so).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
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
from .._html import accuracy_chart, word_diff
from .._http import is_loopback, url_host
from ..eval import Comparison, EvalResult, load_run, shadow_report
from ..store import Store, reads

_MAX_FORM_BYTES = 1024 * 1024
BODY_TIMEOUT = 30.0  # seconds for a form's body to arrive whole (a trickle holds a connection)
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


def token_cookie(token: str) -> str:
    """The cookie that carries ``token``: cookies are scoped by host, not port, so the name is
    the token's own (two apps on one host keep theirs apart; one token, one value)."""
    return "finetuner_ui_" + hashlib.sha256(token.encode()).hexdigest()[:16]


def same_origin_path(path: str) -> str:
    """``path`` if it is a path on this app (one leading ``/``), else ``/``: ``//host/`` and
    ``/\\host/`` are other sites to a browser."""
    if not path.startswith("/") or path[1:2] in ("/", "\\") or any(c < " " for c in path):
        return "/"
    return path


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


async def _body(request: Request, limit: int, timeout: float) -> bytes:
    """The request's body, refused with 413 once it passes ``limit`` bytes: counted as it
    arrives, so a chunked body (no Content-Length) is never held whole; 408 if it has not
    arrived whole within ``timeout`` seconds."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise UIError(413, f"the form is over {limit // (1024 * 1024)} MB")
    body = bytearray()
    try:
        with anyio.fail_after(timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise UIError(413, f"the form is over {limit // (1024 * 1024)} MB")
    except TimeoutError:
        raise UIError(408, f"the form did not arrive within {timeout:g} seconds") from None
    return bytes(body)


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
        body_timeout: float = BODY_TIMEOUT,
    ) -> None:
        if not is_loopback(host) and not token:
            raise ConfigurationError(
                f"finetuner ui on {host} would show captured prompts to the network; pass "
                f"--token (or set FINETUNER_UI_TOKEN), or bind to 127.0.0.1"
            )
        self.store = store
        self.read_only = read_only
        self.token = token
        self.host = host
        self.encoding = encoding  # for the validation page's token counts (tests pass one)
        self.body_timeout = body_timeout
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
            store_path=self.store.location,
            **context,
        )
        return HTMLResponse(page, status_code=status)

    def page(self, handler: Callable[[Request], Any]) -> Callable[[Request], Awaitable[Response]]:
        """An endpoint that shows a refused request (UIError, a bad value) as an error page."""

        async def endpoint(request: Request) -> Response:
            try:
                result = handler(request)
                if isinstance(result, Awaitable):
                    return await result  # type: ignore[no-any-return]
                return result  # type: ignore[no-any-return]
            except UIError as exc:
                return self.render(request, "error.html", exc.status, message=str(exc))
            except (FinetunerError, ValueError) as exc:
                return self.render(request, "error.html", 400, message=str(exc))

        return endpoint

    def threaded(self, handler: Callable[[Request], Response]) -> Callable[[Request], Any]:
        """A page that reads the store: off the event loop, after the schema check."""

        def checked(request: Request) -> Response:
            self.check_schema()
            return handler(request)

        return lambda request: run_in_threadpool(checked, request)

    async def guard(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Every request: its Host must name the app, it must carry the token (if there is
        one), and every answer gets the safety headers."""
        if not self.allowed_host(request):
            return PlainTextResponse(
                "this app answers only to its own address (the Host header did not name it)",
                status_code=421,
            )
        token = request.query_params.get("token")
        if self.token and token is not None:
            response = self.token_redirect(request, token)
        elif not self.authorised(request):
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

    def token_redirect(self, request: Request, token: str) -> Response:
        """The printed URL's token: kept as a cookie of this app, and taken out of the address
        bar by a redirect to the same page of this app (never to another site)."""
        assert self.token is not None
        if not hmac.compare_digest(token.encode(), self.token.encode()):
            return PlainTextResponse("wrong token", status_code=401)
        rest = {k: v for k, v in request.query_params.items() if k != "token"}
        target = same_origin_path(request.url.path) + (f"?{urlencode(rest)}" if rest else "")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            token_cookie(self.token),
            self.token,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    def allowed_host(self, request: Request) -> bool:
        if self.host in ("0.0.0.0", "::"):
            return True  # bound to every address: the token guards it
        try:
            named = urlsplit("//" + request.headers.get("host", "")).hostname or ""
        except ValueError:
            return False
        return named == self.host.strip("[]").lower() or is_loopback(named)

    def authorised(self, request: Request) -> bool:
        if not self.token:
            return True
        given = request.cookies.get(token_cookie(self.token)) or ""
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
        body = await _body(request, _MAX_FORM_BYTES, self.body_timeout)
        fields = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if not hmac.compare_digest(fields.get("csrf", "").encode(), self.csrf.encode()):
            raise UIError(
                403,
                "the form's CSRF token is missing or stale (the app was restarted?); "
                "reload the page and try again",
            )
        return fields

    # --- pages --------------------------------------------------------------------------------

    def check_schema(self) -> None:
        """Read-only, a store that needs an upgrade is not read (reading would migrate it)."""
        if not self.read_only or not self.store.exists():
            return
        status = self.store.schema_status()
        if not status.up_to_date and not status.unknown:  # (a newer store: the read says so)
            raise UIError(
                503,
                f"the store {self.store.location} was made by an earlier finetuner-otel and needs "
                f"a schema upgrade, which a --read-only app does not make; upgrade it with "
                f"`finetuner ingest --db {self.store.location}`, or start the app without "
                f"--read-only",
            )

    def datasets(self, request: Request) -> Response:
        store_exists = self.store.exists() or (
            not self.read_only and self.store.pending() > 0  # a read would ingest it
        )
        rows = reads.dataset_summaries(self.store) if store_exists else []
        return self.render(request, "datasets.html", datasets=rows, store_exists=store_exists)

    def dataset(self, request: Request) -> Response:
        name = request.path_params["name"]
        self._need_dataset(name)
        filters = reads.CallFilters.from_query(request.query_params, dataset=name)
        page = reads.list_calls(
            self.store,
            filters,
            older_than=request.query_params.get("older"),
            newer_than=request.query_params.get("newer"),
        )
        return self.render(
            request,
            "dataset.html",
            name=name,
            page=page,
            facets=reads.dataset_facets(self.store, name),
            feedback_filters=list(reads.FEEDBACK_FILTERS),
            statuses=reads.CALL_STATUSES,
        )

    def validation(self, request: Request) -> Response:
        name = request.path_params["name"]
        self._need_dataset(name)
        report = self.store.get_dataset(name).validate(encoding=self.encoding)
        return self.render(request, "validation.html", name=name, report=report)

    def call(self, request: Request) -> Response:
        row = reads.call_detail(self.store, request.path_params["call_id"])
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
        return self.render(request, "jobs.html", jobs=reads.finetune_jobs(self.store))

    def job(self, request: Request) -> Response:
        provider, job_id = request.path_params["provider"], request.path_params["job_id"]
        row = reads.finetune_job(self.store, provider, job_id)
        if row is None:
            raise UIError(404, f"no {provider} job {job_id!r} in the store")
        return self.render(request, "job.html", job=row)

    def evals(self, request: Request) -> Response:
        runs = reads.eval_runs(self.store)
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

    def shadow(self, request: Request) -> Response:
        """The shadow runs, and one run's live comparison with its disagreements to review."""
        dataset = request.query_params.get("dataset")
        candidate = request.query_params.get("candidate")
        runs = reads.shadowed(self.store)
        report = None
        if dataset and candidate:
            report = shadow_report(self.store, dataset, candidate, save=False)
            if not report.pairs:
                raise UIError(404, f"no shadow calls of {candidate!r} on {dataset!r}")
        return self.render(request, "shadow.html", runs=runs, report=report)

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

    def _run(self, run_id: str) -> EvalResult:
        try:
            return load_run(self.store, run_id)
        except ConfigurationError as exc:
            raise UIError(404, str(exc)) from exc

    def _need_dataset(self, name: str) -> None:
        if not reads.dataset_exists(self.store, name):
            raise UIError(404, f"no dataset {name!r} in the store")


def create_app(
    db: str | Path | Store,
    *,
    read_only: bool = False,
    token: str | None = None,
    host: str = "127.0.0.1",
    encoding: Any = None,
    body_timeout: float = BODY_TIMEOUT,
) -> Starlette:
    """The ASGI app of ``finetuner ui`` for the store ``db`` (serve it with any ASGI server)."""
    store = db if isinstance(db, Store) else Store(db, read_only=read_only)
    if read_only and not store.read_only:  # no ingest, no migration: nothing written
        store = Store(store.settings.store, spool_dir=store.spool_dir, read_only=True)
    ui = App(
        store,
        read_only=read_only,
        token=token,
        host=host,
        encoding=encoding,
        body_timeout=body_timeout,
    )
    page, threaded = ui.page, ui.threaded
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
        Route("/shadow", page(threaded(ui.shadow))),
        Mount("/static", StaticFiles(packages=[("finetuner_otel.ui", "static")]), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(BaseHTTPMiddleware, dispatch=ui.guard)])
    app.state.ui = ui
    return app


def url(host: str, port: int, token: str | None) -> str:
    """The address ``finetuner ui`` prints: the token in it, for the browser to keep."""
    query = f"?{urlencode({'token': token})}" if token else ""
    return f"http://{url_host(host)}:{port}/{query}"
