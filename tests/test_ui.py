"""``finetuner ui``: the real app served by uvicorn on 127.0.0.1, driven in Debian's headless
Chromium through Playwright (its executable_path: no browser download), over a store made by
the real capture path (tests/_ui_seed.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from finetuner_otel import ConfigurationError, Store
from finetuner_otel.testing import OpenAIServer
from tests._ui_seed import DATASET, PROMPT, XSS, Seeded, Served, seed

uvicorn = pytest.importorskip("uvicorn")
from finetuner_otel.ui import create_app  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"
)


def fetch(
    url: str, data: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str, Any]:
    """(status, body, headers) of a GET (or a form POST), redirects not followed."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers=headers or {})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.read().decode(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    with OpenAIServer() as server:
        yield seed(tmp_path_factory.mktemp("ui") / "finetuner.duckdb", server)


@pytest.fixture
def store_copy(seeded: Seeded, tmp_path: Path) -> Path:
    """A copy of the seeded store for a test that writes."""
    target = tmp_path / "copy.duckdb"
    shutil.copy(seeded.db, target)
    return target


@pytest.fixture
def app(store_copy: Path) -> Iterator[Served]:
    served = Served(store_copy)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


class Page:
    """A browser tab that records console messages and page errors."""

    def __init__(self, browser: Any, base: str, **context: Any) -> None:
        self.context = browser.new_context(**context)
        self.page = self.context.new_page()
        self.base = base
        self.problems: list[str] = []
        self.page.on(
            "console",
            lambda m: (
                self.problems.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "warning")
                else None
            ),
        )
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))

    def open(self, path: str) -> Any:
        response = self.page.goto(self.base + path)
        assert response is not None
        return response

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(chromium: Any, app: Served) -> Iterator[Page]:
    page = Page(chromium, app.url)
    yield page
    page.close()
    assert page.problems == []


def _example_messages(db: Path, call_id: str) -> list[dict[str, Any]]:
    """The training example a call exports as, after a real export to JSONL."""
    store = Store(db)
    out = store.get_dataset(DATASET).to_jsonl(db.parent / "export.jsonl")
    ids = store.sql(
        "SELECT call_id FROM snapshot_calls WHERE snapshot_id = ? ORDER BY position",
        [out.snapshot],
    ).rows
    lines = out.read_text().splitlines()
    position = [row[0] for row in ids].index(call_id)
    return json.loads(lines[position])["messages"]  # type: ignore[no-any-return]


# --- pages in the browser -----------------------------------------------------------------------


@needs_chromium
def test_every_page_opens_without_console_errors(tab: Page, seeded: Seeded) -> None:
    page = tab.page
    assert tab.open("/").status == 200
    row = page.locator("#datasets tbody tr", has_text=DATASET)
    assert row.locator("td").nth(1).inner_text() == "13"  # 10 labelled, xss, tool, image
    assert row.locator("td").nth(3).inner_text() == "1"  # the failed call

    row.get_by_role("link", name=DATASET).click()
    assert page.locator("#examples tbody tr").count() == 14
    assert "14 calls match" in page.inner_text("main")

    page.get_by_role("link", name="validation and token stats").click()
    assert "13 examples" in page.inner_text(".notice")
    assert "tokens" in page.inner_text("pre.stats")

    assert tab.open(f"/calls/{seeded.tool_call}").status == 200
    assert "lookup_order" in page.inner_text(".tool-call")
    assert '"order_id": "A-1042"' in page.inner_text(".tool-call pre")
    assert page.locator(".meta").inner_text().count(seeded.tool_call[:32]) == 1  # trace id

    tab.open(f"/calls/{seeded.image_call}")
    image = page.locator(".msg.user img.image")
    assert image.evaluate("img => img.complete && img.naturalWidth") == 48

    tab.open(f"/calls/{seeded.error_call}")
    assert "BadRequestError" in page.inner_text(".meta")
    assert "no: the call failed" in page.inner_text(".meta")

    tab.open("/jobs")
    job_row = page.locator("#jobs tbody tr")
    assert job_row.count() == 1 and "succeeded" in job_row.inner_text()
    job_row.get_by_role("link", name=seeded.job_id).click()
    events = page.locator("#events tbody tr")
    assert [events.nth(i).locator("td").nth(2).inner_text() for i in range(events.count())][
        -1
    ] == "succeeded"
    assert "ft:gpt-4o-mini-2024-07-18" in page.inner_text(".meta")

    tab.open("/evals")
    assert page.locator("figure.chart svg rect").count() == 2
    assert page.locator("#runs tbody tr").count() == 2
    page.locator("#runs tbody tr").first.get_by_role("link").click()
    assert page.locator("#results tbody tr").count() == 10
    assert "accuracy 90.0%" in page.inner_text(".notice")


@needs_chromium
def test_correcting_a_completion_changes_the_export(
    tab: Page, seeded: Seeded, store_copy: Path
) -> None:
    call_id = seeded.tool_call
    before = _example_messages(store_copy, call_id)
    assert before[-1]["tool_calls"][0]["function"]["name"] == "lookup_order"

    page = tab.page
    tab.open(f"/calls/{call_id}")
    page.fill("#completion", "Order A-1042 left the depot today.")
    page.locator("form.review").nth(1).locator("input[name=note]").fill("answer, not a lookup")
    page.get_by_role("button", name="Save correction").click()
    assert "Saved: correct." in page.inner_text("[role=status]")
    assert "correction, trained on" in (page.text_content(".chat") or "")
    assert "answer, not a lookup" in page.inner_text(".history")

    after = _example_messages(store_copy, call_id)
    assert after[:-1] == before[:-1]
    assert after[-1] == {"role": "assistant", "content": "Order A-1042 left the depot today."}
    # the same feedback record the API writes
    [(kind, note)] = (
        Store(store_copy).sql("SELECT kind, note FROM feedback WHERE call_id = ?", [call_id]).rows
    )
    assert (kind, note) == ("correct", "answer, not a lookup")


@needs_chromium
def test_accept_reject_and_filters(tab: Page, seeded: Seeded, store_copy: Path) -> None:
    page = tab.page
    base = f"/datasets/{DATASET}"
    tab.open(f"/calls/{seeded.xss_call}")
    page.get_by_role("button", name="Reject").click()
    assert "Saved: reject." in page.inner_text("[role=status]")
    tab.open(f"/calls/{seeded.image_call}")
    page.get_by_role("button", name="Accept").click()

    tab.open(base)
    page.select_option("select[name=feedback]", "rejected")
    page.get_by_role("button", name="Filter").click()
    assert [r.get_attribute("data-id") for r in page.locator("#examples tbody tr").all()] == [
        seeded.xss_call
    ]
    assert "feedback=rejected" in page.url
    tab.open(base + "?feedback=accepted")
    assert [r.get_attribute("data-id") for r in page.locator("#examples tbody tr").all()] == [
        seeded.image_call
    ]
    tab.open(base + "?feedback=unreviewed")
    assert page.locator("#examples tbody tr").count() == 12
    # a rejected call leaves the examples
    tab.open("/")
    assert page.locator("#datasets tbody tr td").nth(1).inner_text() == "12"
    assert len(Store(store_copy).get_dataset(DATASET)) == 12

    for query in ("?status=error", "?trainable=no"):
        tab.open(base + query)
        assert [r.get_attribute("data-id") for r in page.locator("#examples tbody tr").all()] == [
            seeded.error_call
        ]
    tab.open(base)
    page.select_option("select[name=model]", "gpt-4.1-nano")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("#examples tbody tr").count() == 5
    versions = page.locator("select[name=prompt_version] option").all_inner_texts()
    assert versions == ["any", PROMPT.version]
    page.select_option("select[name=model]", "")
    page.select_option("select[name=prompt_version]", versions[1])
    page.get_by_role("button", name="Filter").click()
    assert page.locator("#examples tbody tr").count() == 6
    page.fill("input[name=q]", "CRUSHED box")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("#examples tbody tr")
    assert rows.count() == 1 and "crushed box" in rows.inner_text()
    page.get_by_role("link", name="clear").click()
    assert page.locator("#examples tbody tr").count() == 14


@needs_chromium
def test_comparing_two_eval_runs(tab: Page, seeded: Seeded) -> None:
    page = tab.page
    tab.open("/evals")
    page.check(f"input[name=a][value='{seeded.baseline_run}']")
    page.check(f"input[name=b][value='{seeded.candidate_run}']")
    page.get_by_role("button", name="Compare the two runs").click()
    assert page.locator("h1").inner_text() == "tuned against base"
    verdict = page.inner_text(".verdict")
    assert "90.0% vs 70.0%" in verdict and "2 better, 0 worse" in verdict
    assert page.locator("#pairs tbody tr").count() == 10
    assert page.locator("#pairs tbody tr.changed").count() == 2
    changed = page.locator("#pairs tbody tr.changed").first
    assert changed.locator("td").nth(2).locator("del").count() == 1  # base missed the label
    assert changed.locator("td").nth(2).locator("ins").inner_text() == "other"
    page.get_by_role("link", name="Only the 2 disagreements").click()
    assert page.locator("#pairs tbody tr").count() == 2


@needs_chromium
def test_a_script_in_a_completion_renders_as_text(tab: Page, seeded: Seeded) -> None:
    page = tab.page
    for path in (f"/calls/{seeded.xss_call}", f"/datasets/{DATASET}"):
        tab.open(path)
        assert page.title() != "pwned"
        assert (
            page.evaluate("document.querySelectorAll('main script, main img[src=x]').length") == 0
        )
    tab.open(f"/calls/{seeded.xss_call}")
    assert XSS in page.inner_text(".msg.assistant .content")
    assert "<b>bold</b> & risky" in page.inner_text(".msg.user .content")
    assert XSS in page.input_value("#completion")  # in the correction box, as text too


@needs_chromium
def test_reading_works_with_javascript_off(chromium: Any, app: Served, seeded: Seeded) -> None:
    tab = Page(chromium, app.url, java_script_enabled=False)
    try:
        page = tab.page
        tab.open(f"/datasets/{DATASET}?status=ok")
        assert page.locator("#examples tbody tr").count() == 13
        page.locator("#examples tbody tr").first.locator("a").first.click()
        assert page.locator(".chat .msg").count() >= 2
    finally:
        tab.close()


# --- paging ------------------------------------------------------------------------------------


def test_paging_over_100000_calls(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from finetuner_otel.exporters._spans import span_to_line
    from finetuner_otel.store._files import write_spool

    store = Store(tmp_path / "big.duckdb")
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("finetuner_otel.instrumentation")
    total = 100_000
    for start in range(0, total, 20_000):
        for i in range(start, start + 20_000):
            with tracer.start_as_current_span("chat m") as span:
                span.set_attributes(
                    {
                        "gen_ai.operation.name": "chat",
                        "gen_ai.request.model": "m",
                        "finetuner.dataset": "big",
                        "gen_ai.input.messages": json.dumps(
                            [{"role": "user", "parts": [{"type": "text", "content": f"q{i}"}]}]
                        ),
                        "gen_ai.output.messages": json.dumps(
                            [
                                {
                                    "role": "assistant",
                                    "parts": [{"type": "text", "content": "a"}],
                                    "finish_reason": "stop",
                                }
                            ]
                        ),
                    }
                )
        write_spool(store.spool_dir, [span_to_line(s) for s in memory.get_finished_spans()])
        memory.clear()
        store.ingest()
    served = Served(store.path)
    try:
        status, body, _ = fetch(served.url + "/datasets/big")
        assert status == 200 and "100,000 calls match" in body
        seen: list[str] = []
        pages = [body]
        for _ in range(3):  # older, older, older
            seen += re.findall(r'data-id="([0-9a-f]+)"', pages[-1])
            older = re.search(r'rel="next" href="\?([^"]+)"', pages[-1])
            assert older is not None
            status, body, _ = fetch(
                served.url + "/datasets/big?" + older.group(1).replace("&amp;", "&")
            )
            assert status == 200
            pages.append(body)
        questions = re.findall(r'<td class="text">(q\d+)</td>', "".join(pages[:3]))
        assert questions == [f"q{i}" for i in range(total - 1, total - 151, -1)]  # newest first
        assert len(seen) == len(set(seen)) == 150
        # and back: the page before the fourth is the third
        newer = re.search(r'rel="prev" href="\?([^"]+)"', pages[3])
        assert newer is not None
        _, back, _ = fetch(served.url + "/datasets/big?" + newer.group(1).replace("&amp;", "&"))
        assert re.findall(r'data-id="([0-9a-f]+)"', back) == seen[100:150]
        # a filter that matches one call deep in the table
        _, one, _ = fetch(served.url + "/datasets/big?q=q17")
        assert "11 calls match" in one  # q17, q1700..q1799? no: q17, q170..q179, q1700.. -> count
    finally:
        served.stop()


# --- safety over HTTP ----------------------------------------------------------------------------


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None
    return match.group(1)


def _feedback_rows(db: Path) -> int:
    return int(Store(db).sql("SELECT count(*) FROM feedback").rows[0][0])


def test_writes_need_the_csrf_token_and_the_apps_own_origin(
    app: Served, seeded: Seeded, store_copy: Path
) -> None:
    target = f"{app.url}/calls/{seeded.xss_call}/feedback"
    _, page, headers = fetch(f"{app.url}/calls/{seeded.xss_call}")
    assert "script-src" not in headers["Content-Security-Policy"]  # no script at all
    assert headers["X-Frame-Options"] == "DENY"
    token = _csrf(page)
    status, body, _ = fetch(target, {"action": "reject"})
    assert status == 403 and "CSRF token is missing or stale" in body
    status, _, _ = fetch(target, {"action": "reject", "csrf": "forged"})
    assert status == 403
    status, body, _ = fetch(
        target, {"action": "reject", "csrf": token}, {"Origin": "http://evil.example"}
    )
    assert status == 403 and "another origin" in body
    status, _, _ = fetch(
        target, {"action": "reject", "csrf": token}, {"Sec-Fetch-Site": "cross-site"}
    )
    assert status == 403
    assert _feedback_rows(store_copy) == 0
    status, _, headers = fetch(target, {"action": "reject", "csrf": token, "note": "spam"})
    assert status == 303 and headers["Location"] == f"/calls/{seeded.xss_call}?done=reject"
    assert _feedback_rows(store_copy) == 1
    status, body, _ = fetch(target, {"action": "correct", "csrf": token, "completion": "  "})
    assert status == 400 and "needs the answer&#39;s text" in body
    status, body, _ = fetch(f"{app.url}/calls/nope/feedback", {"action": "accept", "csrf": token})
    assert status == 404 and "no call with id" in body
    assert _feedback_rows(store_copy) == 1


def test_read_only_shows_no_forms_and_refuses_writes(seeded: Seeded, store_copy: Path) -> None:
    served = Served(store_copy, read_only=True)
    try:
        _, page, _ = fetch(f"{served.url}/calls/{seeded.xss_call}")
        assert '<form method="post"' not in page and "read-only" in page
        status, body, _ = fetch(
            f"{served.url}/calls/{seeded.xss_call}/feedback", {"action": "accept", "csrf": "x"}
        )
        assert status == 403 and "--read-only" in body
        assert _feedback_rows(store_copy) == 0
    finally:
        served.stop()


def test_only_its_own_host_name_is_answered(app: Served) -> None:
    status, body, _ = fetch(app.url + "/", headers={"Host": "evil.example"})
    assert status == 421 and "its own address" in body
    assert fetch(app.url + "/", headers={"Host": "localhost:1234"})[0] == 200


def test_off_the_loopback_a_token_is_required(store_copy: Path) -> None:
    with pytest.raises(ConfigurationError, match="--token"):
        create_app(store_copy, host="0.0.0.0")
    served = Served(store_copy, host="127.0.0.1", token="s3cret")
    try:
        status, body, _ = fetch(served.url + "/")
        assert status == 401 and "needs its token" in body
        assert fetch(served.url + "/?token=wrong")[0] == 401
        status, _, headers = fetch(served.url + "/evals?token=s3cret")
        assert status == 303 and headers["Location"] == "/evals"
        cookie = headers["Set-Cookie"].split(";")[0]
        assert "HttpOnly" in headers["Set-Cookie"]
        assert fetch(served.url + "/evals", headers={"Cookie": cookie})[0] == 200
        assert fetch(served.url + "/", headers={"Authorization": "Bearer s3cret"})[0] == 200
    finally:
        served.stop()


def test_bad_filters_and_unknown_pages_say_what_is_wrong(app: Served) -> None:
    status, body, _ = fetch(f"{app.url}/datasets/{DATASET}?feedback=maybe")
    assert status == 400 and "use one of unreviewed, accepted" in body
    status, body, _ = fetch(f"{app.url}/datasets/{DATASET}?older=garbage")
    assert status == 400 and "go back to the first page" in body
    status, body, _ = fetch(f"{app.url}/datasets/nope")
    assert status == 404 and "no dataset &#39;nope&#39;" in body
    status, body, _ = fetch(f"{app.url}/evals/compare?a=x")
    assert status == 400 and "pick two runs" in body
    status, body, _ = fetch(f"{app.url}/evals/run-nope")
    assert status == 404 and "names no run" in body


def test_the_cli_prints_the_url_and_serves(store_copy: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "finetuner_otel.cli", "ui", "--db", str(store_copy), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = ""
        deadline = time.monotonic() + 60
        while "http://" not in line:
            assert time.monotonic() < deadline and process.poll() is None, line
            line = process.stderr.readline()
        url = line.strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)
        status, body, _ = fetch(url)
        assert status == 200 and DATASET in body
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stderr is not None:
            process.stderr.close()


def test_a_port_in_use_is_a_clear_error(store_copy: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "finetuner_otel.cli",
                "ui",
                "--db",
                str(store_copy),
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert run.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in run.stderr
    assert "--port 0 picks a free one" in run.stderr


# --- hardening -----------------------------------------------------------------------------------


def test_a_chunked_body_is_refused_as_it_arrives(app: Served, seeded: Seeded) -> None:
    """No Content-Length: the limit is counted while reading, so the answer (413) comes while
    the sender is still sending, rather than after the whole body is held in memory."""
    import socket

    port = int(app.url.rsplit(":", 1)[1])
    chunk = b"x" * 65536
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(
            f"POST /calls/{seeded.xss_call}/feedback HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        for _ in range(24):  # 1.5 MB, and the last chunk never comes
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        sock.settimeout(10)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"over 1 MB" in answer or b"413" in answer


def test_a_body_that_trickles_in_is_cut_off(store_copy: Path, seeded: Seeded) -> None:
    import socket

    served = Served(store_copy, body_timeout=0.5)
    try:
        port = int(served.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(
                f"POST /calls/{seeded.xss_call}/feedback HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                "Content-Length: 100\r\n\r\ncsrf=".encode()
            )
            sock.settimeout(10)
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    finally:
        served.stop()


def _get(url: str, path: str) -> tuple[int, dict[str, str]]:
    """(status, headers) of a GET of exactly ``path`` (urllib would normalise it)."""
    import http.client

    netloc = urllib.parse.urlsplit(url).netloc
    connection = http.client.HTTPConnection(netloc, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def test_the_token_link_redirects_only_within_the_app(store_copy: Path) -> None:
    served = Served(store_copy, token="s3cret")
    try:
        for path in ("//evil.example/?token=s3cret", "/\\evil.example/?token=s3cret"):
            status, headers = _get(served.url, path)
            location = headers["location"]  # a path of this app: one leading "/", no "\\"
            assert status == 303 and location.startswith("/"), (path, headers)
            assert location[1:2] not in ("/", "\\"), (path, location)
        status, headers = _get(served.url, "/evals?token=s3cret&x=1")
        assert status == 303 and headers["location"] == "/evals?x=1"
    finally:
        served.stop()


def test_the_token_cookie_is_scoped_to_the_app(store_copy: Path) -> None:
    from starlette.testclient import TestClient

    cookies = {}
    for token in ("s3cret", "other"):
        served = Served(store_copy, token=token)
        try:
            _, _, headers = fetch(served.url + "/?token=" + token)
            cookies[token] = headers["Set-Cookie"]
        finally:
            served.stop()
    for cookie in cookies.values():
        attributes = [part.strip().lower() for part in cookie.split(";")]
        assert {"path=/", "httponly", "samesite=strict"} <= set(attributes), cookie
        assert "secure" not in attributes  # served over http here
    names = {token: cookie.split("=", 1)[0] for token, cookie in cookies.items()}
    # two apps on one host (cookies ignore the port) keep their tokens apart
    assert names["s3cret"] != names["other"] and "finetuner_ui_token" not in names.values()
    app = create_app(store_copy, token="s3cret", encoding=None)
    with TestClient(app, base_url="https://127.0.0.1", follow_redirects=False) as client:
        response = client.get("/?token=s3cret")
    assert response.status_code == 303
    assert "secure" in [p.strip().lower() for p in response.headers["set-cookie"].split(";")]


def _spool_one_call(db: Path) -> None:
    """One captured call left in the store's spool (exported, not yet ingested)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from finetuner_otel import DuckDBSpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("finetuner_otel.instrumentation").start_as_current_span("chat m") as s:
        s.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "m",
                "finetuner.dataset": "spooled",
                "gen_ai.input.messages": json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": "q"}]}]
                ),
            }
        )
    exporter = DuckDBSpanExporter(db, ingest_interval=3600)  # no ingest within this test
    exporter.export(memory.get_finished_spans())
    assert Store(db).pending() == 1


def _files(db: Path) -> dict[str, str]:
    """Every file beside the store (the store, its WAL, the spool), with its SHA-256."""
    import hashlib

    return {
        str(path.relative_to(db.parent)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(db.parent.rglob("*"))
        if path.is_file()
    }


def test_read_only_writes_nothing(seeded: Seeded, store_copy: Path) -> None:
    _spool_one_call(store_copy)
    before = _files(store_copy)
    served = Served(store_copy, read_only=True)
    try:
        for path in (
            "/",
            f"/datasets/{DATASET}",
            f"/datasets/{DATASET}/validation",
            f"/calls/{seeded.xss_call}",
            "/jobs",
            "/evals",
            f"/evals/{seeded.baseline_run}",
        ):
            status, body, _ = fetch(served.url + path)
            assert status == 200, (path, body[:300])
        assert "spooled" not in fetch(served.url + "/")[1]  # the spool is not ingested
    finally:
        served.stop()
    assert _files(store_copy) == before
    assert Store(store_copy).pending() == 1


def test_read_only_does_not_upgrade_an_older_store(tmp_path: Path) -> None:
    import duckdb

    from tests._schema_history import MIGRATIONS  # as released: a store the last version made

    db = tmp_path / "old.duckdb"
    with duckdb.connect(str(db), config={"autoinstall_known_extensions": False}) as con:
        con.execute(
            "CREATE TABLE finetuner_migrations (name VARCHAR PRIMARY KEY, "
            "applied_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp)"
        )
        for name, sql in MIGRATIONS:
            con.execute(sql)
            con.execute("INSERT INTO finetuner_migrations (name) VALUES (?)", [name])
    before = _files(db)
    served = Served(db, read_only=True)
    try:
        status, body, _ = fetch(served.url + "/")
        assert status == 503 and "needs a schema upgrade" in body and "--read-only" in body
        assert fetch(served.url + "/jobs")[0] == 503
    finally:
        served.stop()
    assert _files(db) == before
    served = Served(db)  # without --read-only, the app upgrades it as any reader does
    try:
        assert fetch(served.url + "/")[0] == 200
    finally:
        served.stop()
