"""The public surface changes only on purpose."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import finetuner_otel

from .conftest import REPO


def test_public_names() -> None:
    assert finetuner_otel.__all__ == sorted(finetuner_otel.__all__)
    assert finetuner_otel.__all__ == [
        "CallNotFoundError",
        "ConfigurationError",
        "Dataset",
        "DatasetNotFoundError",
        "DatasetSummary",
        "DuckDBSpanExporter",
        "Example",
        "Export",
        "FinetunerError",
        "ImportResult",
        "Instrumentation",
        "OpenAIInstrumentor",
        "Prompt",
        "Route",
        "SQLResult",
        "SchemaError",
        "Shadow",
        "Snapshot",
        "Stats",
        "Store",
        "StoreError",
        "StoreLockedError",
        "ValidationReport",
        "__version__",
        "dataset",
        "instrument",
        "open_store",
        "route",
        "shadow",
        "uninstrument",
        "validate_jsonl",
    ]
    for name in finetuner_otel.__all__:
        assert getattr(finetuner_otel, name) is not None


def test_exporters_live_inside_the_package_only(tmp_path: Path) -> None:
    from finetuner_otel.exporters import DuckDBSpanExporter

    assert DuckDBSpanExporter.__module__ == "finetuner_otel.exporters._duckdb"
    # Outside the checkout, the install provides no top-level ``exporters`` package.
    code = "import importlib.util; print(importlib.util.find_spec('exporters'))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == "None"


def test_entry_points_are_registered() -> None:
    def names(group: str) -> dict[str, str]:
        return {ep.name: ep.value for ep in entry_points(group=group)}

    assert names("opentelemetry_instrumentor")["finetuner_openai"] == (
        "finetuner_otel.instrumentation:OpenAIInstrumentor"
    )
    assert names("opentelemetry_traces_exporter")["finetuner_duckdb"] == (
        "finetuner_otel.exporters:DuckDBSpanExporter"
    )
    for group in ("opentelemetry_instrumentor", "opentelemetry_traces_exporter"):
        for ep in entry_points(group=group):
            if ep.name.startswith("finetuner"):
                assert ep.load()


def test_the_instrumentation_does_not_load_the_store() -> None:
    code = (
        "import sys, finetuner_otel.instrumentation; "
        "print('duckdb' in sys.modules, 'finetuner_otel.store' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_demo_runs_without_a_key(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "quickstart.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "local OpenAI-compatible server" in done.stdout
    assert "search_classifier: 10 examples" in done.stdout
    assert (tmp_path / "finetuner-demo" / "train.jsonl").exists()
    assert done.stderr == ""
