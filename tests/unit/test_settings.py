"""``finetuner_otel._settings``: dataset names and ``Settings.load``, each bad value a clear
error that names the fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from finetuner_otel import ConfigurationError
from finetuner_otel._settings import (
    DEFAULT_MAX_CONTENT_SIZE,
    Settings,
    check_dataset_name,
    load_default_dataset,
    load_max_content_size,
)


def test_good_dataset_names_are_returned_as_they_are() -> None:
    for name in ("search_classifier", "a", "x" * 200, "données / 2026", " padded "):
        assert check_dataset_name(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (7, "must be a string, got int 7; pass the name as text"),
        (None, "must be a string, got NoneType"),
        ("", "is empty; give a name such as"),
        ("  \t", "is empty"),
        ("x" * 201, "is 201 characters long; use at most 200"),
        ("a\nb", "contains control characters; use printable text only"),
        ("a\x7fb", "contains control characters"),
    ],
)
def test_bad_dataset_names_say_why(name: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)) as caught:
        check_dataset_name(name, source="dataset_name")
    assert str(caught.value).startswith("dataset_name ")  # names where the value came from


def test_the_default_dataset_argument_wins_over_the_environment() -> None:
    env = {"FINETUNER_DATASET": "from_env"}
    assert load_default_dataset("from_arg", env) == "from_arg"
    assert load_default_dataset(None, env) == "from_env"
    assert load_default_dataset(None, {}) == "default"
    with pytest.raises(ConfigurationError, match="FINETUNER_DATASET / default_dataset"):
        load_default_dataset(None, {"FINETUNER_DATASET": "bad\x00name"})


def test_max_content_size() -> None:
    assert load_max_content_size({}) == DEFAULT_MAX_CONTENT_SIZE
    assert load_max_content_size({"FINETUNER_MAX_CONTENT_SIZE": "10"}) == 10
    for raw in ("0", "-3", "1.5", "ten", ""):
        with pytest.raises(ConfigurationError, match="whole number of characters > 0, got"):
            load_max_content_size({"FINETUNER_MAX_CONTENT_SIZE": raw})


def test_load_defaults_and_precedence(tmp_path: Path) -> None:
    settings = Settings.load(environ={})
    assert settings.db_path == Path("finetuner.duckdb").absolute()
    assert settings.spool_dir == Path("finetuner.duckdb.spool").absolute()
    assert (settings.default_dataset, settings.ingest_interval) == ("default", 1.0)

    env = {
        "FINETUNER_DB": str(tmp_path / "env.duckdb"),
        "FINETUNER_SPOOL_DIR": str(tmp_path / "env-spool"),
        "FINETUNER_DATASET": "env_ds",
        "FINETUNER_INGEST_INTERVAL": "0.25",
        "FINETUNER_MAX_CONTENT_SIZE": "99",
    }
    from_env = Settings.load(environ=env)
    assert from_env == Settings(tmp_path / "env.duckdb", tmp_path / "env-spool", "env_ds", 0.25, 99)
    from_args = Settings.load(
        tmp_path / "arg.duckdb", default_dataset="arg_ds", ingest_interval=0, environ=env
    )
    assert from_args.db_path == tmp_path / "arg.duckdb"
    assert from_args.spool_dir == tmp_path / "env-spool"  # still from the environment
    assert (from_args.default_dataset, from_args.ingest_interval) == ("arg_ds", 0)
    # no spool dir given: beside the store
    assert Settings.load(tmp_path / "s.duckdb", environ={}).spool_dir == tmp_path / "s.duckdb.spool"


def test_load_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="is a directory or empty; give a file path"):
        Settings.load(tmp_path, environ={})
    with pytest.raises(ConfigurationError, match="FINETUNER_INGEST_INTERVAL must be a number"):
        Settings.load(environ={"FINETUNER_INGEST_INTERVAL": "soon"})
    for interval in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigurationError, match="finite number of seconds >= 0"):
            Settings.load(ingest_interval=interval, environ={})
    with pytest.raises(ConfigurationError, match="FINETUNER_MAX_CONTENT_SIZE"):
        Settings.load(environ={"FINETUNER_MAX_CONTENT_SIZE": "0"})


def test_an_iceberg_location_is_parsed_and_its_password_never_shown() -> None:
    settings = Settings.load(
        "iceberg+postgresql://fin:s3cret@db.internal:6432/lake?warehouse=/srv/lake&namespace=prod",
        environ={},
    )
    lake = settings.lake
    assert lake is not None
    assert lake.catalog_uri == "postgresql+psycopg2://fin:s3cret@db.internal:6432/lake"
    assert lake.warehouse == "file:///srv/lake" and lake.namespace == "prod"
    assert settings.store is lake
    assert "s3cret" not in settings.location and ":***@" in settings.location
    assert Settings.load(lake.url, environ={}).lake == lake  # the URL gives the same lake back
    assert Settings.load(lake, environ={}).lake == lake
    assert settings.spool_dir.name == "finetuner-iceberg.spool"


def test_an_object_storage_warehouse_is_kept_as_given() -> None:
    lake = Settings.load(
        "iceberg+postgresql://h/db?warehouse=s3://bucket/finetuner", environ={}
    ).lake
    assert lake is not None and lake.warehouse == "s3://bucket/finetuner"


@pytest.mark.parametrize(
    ("location", "problem"),
    [
        ("iceberg+postgresql://host/db", "needs warehouse="),
        ("iceberg+postgresql://host/db?warehouse=/x&bucket=y", "unknown option"),
        ("iceberg+postgresql:///db?warehouse=/x", "host and database"),
        ("iceberg+postgresql://host/?warehouse=/x", "host and database"),
        ("iceberg+postgresql://host/db?warehouse=/x&namespace=a-b", "namespace 'a-b'"),
        ("s3://bucket/finetuner", "not one finetuner-otel knows"),
    ],
)
def test_a_bad_store_location_says_what_is_wrong_and_how_to_write_it(
    location: str, problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(problem)):
        Settings.load(location, environ={})
