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

# Whole files left out of `make check` (pytest -m "not slow"), and why; `make test` runs them.
# Marked here so that the files themselves stay as their owners wrote them (tests/README.md).
SLOW_FILES = {
    "test_processes.py": "whole processes: the launcher, concurrent writers, SIGKILL",
    "test_finetune_local.py": "trains a tiny model with torch",
    "test_ui.py": "headless Chromium, and paging over 100,000 calls",
    "test_properties.py": "hypothesis: 60 generated cases, each called bare and instrumented",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of SLOW_FILES slow, and run tests/unit first (a broken function fails in
    seconds, before any server starts)."""
    tests = Path(__file__).resolve().parent
    for item in items:
        if item.path.parent == tests and item.path.name in SLOW_FILES:
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
