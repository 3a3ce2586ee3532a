"""``opentelemetry-instrument`` beside another distro: installing us changes nothing the user
already has, and the store joins with one documented setting.

The other distro is the real ``opentelemetry-distro`` (its OTLP exporter, metrics and logs on),
which ``make test`` installs into a folder of its own (``.venv/other-distro``), so that it is seen
only by the processes these tests start with that folder on their path. The OTLP side is a small
HTTP sink on 127.0.0.1 that counts what it is sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from finetuner_otel import Store

REPO = Path(__file__).resolve().parent.parent
OTHER_DISTRO = Path(sys.prefix) / "other-distro"
APP = """
import json, os
from finetuner_otel.testing import OpenAIServer
with OpenAIServer() as server:
    client = server.client()
    for i in range(2):
        client.chat.completions.create(model='m', dataset_name='launcher',
            messages=[{'role': 'user', 'content': f'hello {i}'}])
from opentelemetry import trace
pipeline = []  # the provider's span processors, a batch processor with its exporter
for p in trace.get_tracer_provider()._active_span_processor._span_processors:
    inner = getattr(getattr(p, '_batch_processor', None), '_exporter', None)
    inner = inner if inner is not None else getattr(p, 'span_exporter', None)
    pipeline.append(type(p).__name__ + (':' + type(inner).__name__ if inner is not None else ''))
seen = {k: os.environ.get(k) for k in
    ('OTEL_TRACES_EXPORTER', 'OTEL_METRICS_EXPORTER', 'OTEL_LOGS_EXPORTER')}
print(json.dumps({**seen, 'pipeline': sorted(pipeline)}))
"""


class Sink:
    """An OTLP/HTTP endpoint that records the paths it is posted to."""

    def __init__(self) -> None:
        self.posts: list[str] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                sink.posts.append(self.path)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def _ours_first(tmp_path: Path) -> str:
    """A folder holding a copy of our package's metadata, to put on the path before the other
    distro: the launcher then finds our distro first (it takes the first it finds)."""
    from importlib.metadata import distribution

    folder = tmp_path / "ours-first"
    if not folder.exists():
        ours = distribution("finetuner-otel")
        info = folder / f"finetuner_otel-{ours.version}.dist-info"
        info.mkdir(parents=True)
        for name in ("METADATA", "entry_points.txt"):
            (info / name).write_text(ours.read_text(name) or "")
    return str(folder)


def _launch(
    tmp_path: Path, sink: Sink, *, other: bool, ours_first: bool = False, **env: str
) -> tuple[dict[str, str], int]:
    """Run the app under the launcher; its OTEL_* exporters as the app saw them, and the rows
    the store got."""
    if other and not (OTHER_DISTRO / "opentelemetry" / "distro").is_dir():
        pytest.fail(f"{OTHER_DISTRO} is missing: `make test` installs opentelemetry-distro there")
    app = tmp_path / "app.py"
    app.write_text(APP)
    db = tmp_path / f"store-{len(list(tmp_path.glob('store-*')))}.duckdb"
    paths = [str(OTHER_DISTRO)] if other else []
    if ours_first:
        paths.insert(0, _ours_first(tmp_path))
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FINETUNER_"))}
    environ.update(
        PYTHONPATH=os.pathsep.join([*paths, str(REPO)]),
        FINETUNER_DB=str(db),
        OTEL_EXPORTER_OTLP_ENDPOINT=sink.url,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",  # the exporter the test extra installs
        OTEL_BSP_SCHEDULE_DELAY="50",
        OTEL_METRIC_EXPORT_INTERVAL="100",
        **env,
    )
    launcher = Path(sys.executable).with_name("opentelemetry-instrument")
    done = subprocess.run(
        [str(launcher), sys.executable, str(app)],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    rows = len(Store(db).sql("SELECT id FROM calls")) if db.exists() else 0
    return seen, rows


@pytest.mark.parametrize(
    "ours_first", [False, True], ids=["theirs-found-first", "ours-found-first"]
)
def test_with_another_distro_its_exporters_stay_and_ours_joins_only_when_named(
    tmp_path: Path, sink: Sink, ours_first: bool
) -> None:
    seen, rows = _launch(tmp_path, sink, other=True, ours_first=ours_first)
    # opentelemetry-distro's own defaults, untouched by us: OTLP for traces, metrics and logs.
    assert seen == {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "pipeline": ["BatchSpanProcessor:OTLPSpanExporter"],
    }
    assert "/v1/traces" in sink.posts
    assert rows == 0  # the store is not slipped in
    sink.posts.clear()
    seen, rows = _launch(
        tmp_path,
        sink,
        other=True,
        ours_first=ours_first,
        OTEL_TRACES_EXPORTER="otlp,finetuner_duckdb",
    )
    assert "/v1/traces" in sink.posts  # theirs still gets the spans
    assert rows == 2  # and the store gets the calls
    # Their configurator builds the pipeline: it wraps ours as it wraps every exporter.
    assert seen["pipeline"] == [
        "BatchSpanProcessor:DuckDBSpanExporter",
        "BatchSpanProcessor:OTLPSpanExporter",
    ]


def test_with_no_other_distro_ours_is_the_default(tmp_path: Path, sink: Sink) -> None:
    seen, rows = _launch(tmp_path, sink, other=False)
    assert seen == {
        "OTEL_TRACES_EXPORTER": "finetuner_duckdb",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        # Ours builds the store's part: no span queue (a BatchSpanProcessor drops calls when
        # its thread gets too few turns), and one exporter the capture provider shares.
        "pipeline": ["DuckDBSpanProcessor"],
    }
    assert rows == 2
    assert sink.posts == []


def test_with_no_other_distro_other_exporters_keep_their_batch_processor(
    tmp_path: Path, sink: Sink
) -> None:
    seen, rows = _launch(tmp_path, sink, other=False, OTEL_TRACES_EXPORTER="finetuner_duckdb,otlp")
    assert seen["OTEL_TRACES_EXPORTER"] == "finetuner_duckdb,otlp"  # as the app set it
    assert seen["pipeline"] == ["BatchSpanProcessor:OTLPSpanExporter", "DuckDBSpanProcessor"]
    assert rows == 2
    assert "/v1/traces" in sink.posts


def test_the_plan_says_what_the_launcher_will_do(tmp_path: Path) -> None:
    def plan(other: bool, **env: str) -> dict[str, object]:
        code = "import json; from finetuner_otel._distro import launcher_plan; "
        code += "print(json.dumps(launcher_plan()))"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        paths = [str(OTHER_DISTRO)] if other else []
        environ.update(PYTHONPATH=os.pathsep.join([*paths, str(REPO)]), **env)
        done = subprocess.run(
            [sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True
        )
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    theirs = plan(True)
    assert theirs["distro"] == "distro" and theirs["store"] is False
    assert "OTEL_TRACES_EXPORTER=otlp,finetuner_duckdb" in str(theirs["why"])
    assert plan(True, OTEL_TRACES_EXPORTER="otlp,finetuner_duckdb")["store"] is True
    assert plan(False) == {
        "distro": "finetuner",
        "store": True,
        "why": "no other distro is installed: finetuner's is used, and traces go to "
        "finetuner_duckdb (the default)",
    }
