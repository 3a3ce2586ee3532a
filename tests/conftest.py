from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import finetuner_otel
from finetuner_otel.testing import OpenAIServer

REPO = Path(__file__).resolve().parent.parent

# Left out of `make check` (pytest -m "not slow"), and why; `make test` runs them all. Marked
# here so that the test files stay as their owners wrote them (tests/README.md). The seconds are
# rough, from runs on the 2-core development machine.
SLOW_FILES = {
    "test_processes.py": "whole processes: the launcher, concurrent writers, SIGKILL (~45 s)",
    "test_launcher.py": "opentelemetry-instrument beside other distros, each a process (~35 s)",
    "test_finetune_local.py": "trains a tiny model with torch (~25 s)",
    "test_hf_templates.py": "transformers' chat templates, a training step on each (~35 s)",
    "test_ui.py": "headless Chromium, and paging over 100,000 calls (~20 s)",
    "test_properties.py": "hypothesis: 60 generated calls, each bare and instrumented (~20 s)",
    "test_ingest_fuzz.py": "hypothesis: fuzzed spool files through ingest (~75 s)",
    "test_otlp_fuzz.py": "hypothesis: fuzzed OTLP bodies through the receiver (~45 s)",
    "test_serve_attacks.py": "the receiver in a process of its own, its memory measured (~20 s)",
    "test_local_loop.py": "capture, train, serve and evaluate a tiny model with torch (~40 s)",
    "test_adapter_serve.py": "serves a tiny trained adapter with transformers (~20 s)",
    "test_iceberg.py": "a PostgreSQL server, Iceberg tables, four receiver processes (~55 s)",
}
# Single tests of otherwise fast files (file::function, every parametrization).
SLOW_TESTS = {
    "test_cli.py::test_end_to_end_through_the_cli_only": "each step a `finetuner` process (~25 s)",
    "test_eval.py::test_the_html_report_renders_in_chromium_without_console_errors": "Chromium",
    "test_faults.py::test_an_ingest_killed_mid_transaction_loses_nothing_on_rerun": "SIGKILL",
    "test_sql_sandbox.py::test_no_statement_changes_anything_on_disk": "hypothesis (~10 s)",
    # each attack still runs through store.sql() in make check; here on the bare connection
    "test_sql_sandbox.py::test_the_sandbox_itself_refuses_each_attack": "29 stores (~20 s)",
    "test_shadow.py::test_the_live_run_and_the_switch_refusing_then_routing_then_withdrawn": (
        "600 calls and their shadows (~15 s)"
    ),
    "test_shadow.py::test_sampled_shadow_calls_are_stored_beside_production_and_change_nothing": (
        "640 calls (~8 s)"
    ),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark SLOW_FILES and SLOW_TESTS slow, and run tests/unit first (a broken function fails
    in seconds, before any server starts)."""
    tests = Path(__file__).resolve().parent
    for item in items:
        if item.path.parent != tests:
            continue
        name = getattr(item, "originalname", item.name)  # without its parameters
        if item.path.name in SLOW_FILES or f"{item.path.name}::{name}" in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: item.path.parent != tests / "unit")  # stable: order kept


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's own settings or writes into the checkout."""
    for name in list(os.environ):
        if name.startswith(("FINETUNER_", "OPENAI_", "OTEL_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as srv:
        yield srv


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store" / "finetuner.duckdb"


@pytest.fixture
def capture(db: Path) -> Iterator[finetuner_otel.Instrumentation]:
    """instrument() into a fresh store; shut down (and the SDK restored) afterwards."""
    handle = finetuner_otel.instrument(db)
    try:
        yield handle
    finally:
        handle.shutdown()


def rows(handle: finetuner_otel.Instrumentation, where: str = "true") -> list[dict[str, Any]]:
    """Every stored call (JSON columns decoded), oldest first, after a flush."""
    assert handle.flush()
    result = handle.open_store().sql(f"SELECT * FROM calls WHERE {where} ORDER BY started_at, id")
    out = []
    for row in result.dicts():
        for key in (
            "messages",
            "completion",
            "tools",
            "input_messages",
            "output_messages",
            "request_options",
            "attributes",
            "tool_definitions",
            "system_instructions",
        ):
            if isinstance(row.get(key), str):
                row[key] = json.loads(row[key])
        out.append(row)
    return out


CASSETTES = Path(__file__).parent / "cassettes"


def load_cassette(name: str) -> tuple[dict[str, Any], Any]:
    """A recorded exchange (tests/cassettes, see its NOTICE): the request's JSON body, and the
    response as a RawReply for the local server to send back exactly."""
    import yaml

    from finetuner_otel.testing import RawReply

    data = yaml.safe_load((CASSETTES / f"{name}.yaml").read_text())
    interaction = data["interactions"][0]
    response = interaction["response"]
    headers = {k: v[0] if isinstance(v, list) else v for k, v in response["headers"].items()}
    return json.loads(interaction["request"]["body"]), RawReply(
        response["status"]["code"],
        response["body"]["string"],
        {"content-type": headers.get("Content-Type", "application/json")},
    )
