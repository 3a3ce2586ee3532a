"""Settings, read once from arguments and the environment.

=============================  ========================  ======================================
variable                       default                   meaning
=============================  ========================  ======================================
``FINETUNER_DB``               ``./finetuner.duckdb``    the store: a DuckDB file, or Iceberg
                                                         tables in a PostgreSQL catalog
                                                         (``iceberg+postgresql://...``)
``FINETUNER_SPOOL_DIR``        ``<FINETUNER_DB>.spool``  where spans wait for ingest (for
                                                         Iceberg: ``./finetuner-iceberg.spool``)
``FINETUNER_DATASET``          ``default``               dataset of calls not tagged otherwise
``FINETUNER_INGEST_INTERVAL``  ``1.0``                   seconds between background ingests
``FINETUNER_MAX_CONTENT_SIZE`` ``20000000``              characters of one content part (an
                                                         image, audio, a file, a text) above
                                                         which it is left out and the call
                                                         marked not trainable
=============================  ========================  ======================================
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ._errors import ConfigurationError

DEFAULT_DB = "finetuner.duckdb"
# OpenAI accepts images of up to 10 MB in fine-tuning data: as base64, 13.4M characters.
DEFAULT_MAX_CONTENT_SIZE = 20_000_000
DEFAULT_DATASET = "default"
_MAX_DATASET_NAME = 200
# Control characters (C0, DEL, C1: newlines, NUL, terminal escapes) and the bidirectional
# controls that make a name read as another (U+202E shows "gnp.exe" as "exe.png").
_BAD_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def check_dataset_name(name: object, *, source: str = "dataset name") -> str:
    """Return ``name`` if it is a usable dataset name, else raise ConfigurationError saying why."""
    if not isinstance(name, str):
        raise ConfigurationError(
            f"{source} must be a string, got {type(name).__name__} {name!r}; "
            f"pass the name as text, e.g. dataset_name='search_classifier'"
        )
    if not name.strip():
        raise ConfigurationError(f"{source} is empty; give a name such as 'search_classifier'")
    if len(name) > _MAX_DATASET_NAME:
        raise ConfigurationError(
            f"{source} is {len(name)} characters long; use at most {_MAX_DATASET_NAME}"
        )
    if _BAD_NAME_CHARS.search(name):
        raise ConfigurationError(
            f"{source} {name!r} contains control characters; use printable text only "
            f"(no line breaks, escapes or bidirectional controls)"
        )
    return name


def load_default_dataset(value: str | None, env: Mapping[str, str]) -> str:
    """The dataset of calls not tagged otherwise: ``value``, else ``FINETUNER_DATASET``."""
    dataset = value if value is not None else env.get("FINETUNER_DATASET")
    return check_dataset_name(
        dataset or DEFAULT_DATASET, source="FINETUNER_DATASET / default_dataset"
    )


def load_max_content_size(env: Mapping[str, str]) -> int:
    """``FINETUNER_MAX_CONTENT_SIZE``: characters of one content part, a whole number > 0."""
    raw_size = env.get("FINETUNER_MAX_CONTENT_SIZE", str(DEFAULT_MAX_CONTENT_SIZE))
    try:
        size = int(raw_size)
    except ValueError:
        size = 0
    if size <= 0:
        raise ConfigurationError(
            f"FINETUNER_MAX_CONTENT_SIZE must be a whole number of characters > 0, got {raw_size!r}"
        )
    return size


ICEBERG_SCHEME = "iceberg+postgresql"
_ICEBERG_EXAMPLE = "iceberg+postgresql://finetuner@db.internal:5432/finetuner?warehouse=/srv/lake"
_ICEBERG_OPTIONS = frozenset({"warehouse", "namespace"})
_NAMESPACE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


@dataclass(frozen=True)
class Lake:
    """An Iceberg store: tables in ``namespace`` of the SQL catalog on PostgreSQL at
    ``catalog_uri`` (an SQLAlchemy URL), with their Parquet data under ``warehouse`` (a folder
    or an object-storage URL)."""

    catalog_uri: str
    warehouse: str
    namespace: str = "finetuner"

    @property
    def url(self) -> str:
        """The location as FINETUNER_DB takes it, password included (never log it)."""
        return self._location(mask=False)

    @property
    def display(self) -> str:
        """The location with any password masked, for messages and logs."""
        return self._location(mask=True)

    def _location(self, *, mask: bool) -> str:
        parts = urlsplit(self.catalog_uri)
        netloc = parts.netloc
        if mask and parts.password is not None:
            netloc = netloc.replace(":" + parts.password + "@", ":***@", 1)
        query = f"warehouse={self.warehouse}" + (
            "" if self.namespace == "finetuner" else f"&namespace={self.namespace}"
        )
        return urlunsplit((ICEBERG_SCHEME, netloc, parts.path, query, ""))


def parse_lake(location: str) -> Lake:
    """``iceberg+postgresql://user[:password]@host[:port]/database?warehouse=...[&namespace=...]``
    as a Lake; ConfigurationError naming what is wrong otherwise. A password is better left to
    PGPASSWORD or ~/.pgpass (libpq reads both) than written in the URL."""
    parts = urlsplit(location)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - _ICEBERG_OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) {', '.join(unknown)} in the Iceberg store location; it takes "
            f"warehouse= and namespace=, e.g. {_ICEBERG_EXAMPLE}"
        )
    if not parts.hostname or not parts.path.strip("/"):
        raise ConfigurationError(
            f"the Iceberg store location needs the catalog's PostgreSQL host and database, "
            f"e.g. {_ICEBERG_EXAMPLE}"
        )
    warehouse = options.get("warehouse", "").strip()
    if not warehouse:
        raise ConfigurationError(
            "the Iceberg store location needs warehouse= (a folder, or an s3://... URL, where "
            f"the tables' Parquet files go), e.g. {_ICEBERG_EXAMPLE}"
        )
    if "://" not in warehouse:
        warehouse = Path(warehouse).absolute().as_uri()
    namespace = options.get("namespace", "finetuner")
    if not _NAMESPACE.fullmatch(namespace):
        raise ConfigurationError(
            f"the Iceberg namespace {namespace!r} must be a letter or _ then up to 62 letters, "
            f"digits or _"
        )
    uri = urlunsplit(("postgresql+psycopg2", parts.netloc, parts.path, "", ""))
    return Lake(catalog_uri=uri, warehouse=warehouse, namespace=namespace)


@dataclass(frozen=True)
class Settings:
    """Where the store lives and how capture behaves. ``lake`` is set for an Iceberg store;
    ``db_path`` is the DuckDB file otherwise."""

    db_path: Path
    spool_dir: Path
    default_dataset: str = DEFAULT_DATASET
    ingest_interval: float = 1.0
    max_content_size: int = DEFAULT_MAX_CONTENT_SIZE
    lake: Lake | None = None

    @property
    def location(self) -> str:
        """The store as Store() and FINETUNER_DB take it (a password masked)."""
        return self.lake.display if self.lake is not None else str(self.db_path)

    @property
    def store(self) -> Path | Lake:
        """What the store functions take: the DuckDB file, or the Lake."""
        return self.lake if self.lake is not None else self.db_path

    @classmethod
    def load(
        cls,
        db: str | os.PathLike[str] | Lake | None = None,
        *,
        spool_dir: str | os.PathLike[str] | None = None,
        default_dataset: str | None = None,
        ingest_interval: float | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Arguments win over ``FINETUNER_*`` variables, which win over the defaults."""
        env = os.environ if environ is None else environ
        raw_db = db if db is not None else env.get("FINETUNER_DB") or DEFAULT_DB
        lake = None
        if isinstance(raw_db, Lake):
            lake = raw_db
        elif isinstance(raw_db, str) and raw_db.startswith(ICEBERG_SCHEME + "://"):
            lake = parse_lake(raw_db)
        elif isinstance(raw_db, str) and re.match(r"[a-z][a-z0-9+.-]*://", raw_db):
            raise ConfigurationError(
                f"the store location {raw_db.split('://')[0]}://... is not one finetuner-otel "
                f"knows; give a DuckDB file path such as ./finetuner.duckdb or an Iceberg store "
                f"such as {_ICEBERG_EXAMPLE}"
            )
        if lake is not None:
            spool = spool_dir if spool_dir is not None else env.get("FINETUNER_SPOOL_DIR")
            spool_path = Path(spool or "finetuner-iceberg.spool").absolute()
            # db_path is not used for a lake (Settings.store is what the store functions take)
            return cls._finish(
                spool_path / "not-a-store", spool_path, default_dataset, ingest_interval, env, lake
            )
        assert not isinstance(raw_db, Lake)
        db_path = Path(raw_db)
        if str(db_path).strip() == "" or db_path.is_dir():
            raise ConfigurationError(
                f"the store path {str(db_path)!r} is a directory or empty; "
                f"give a file path such as ./finetuner.duckdb (argument db= or FINETUNER_DB)"
            )
        spool = spool_dir if spool_dir is not None else env.get("FINETUNER_SPOOL_DIR")
        spool_path = Path(spool) if spool else db_path.with_name(db_path.name + ".spool")
        return cls._finish(
            db_path.absolute(), spool_path.absolute(), default_dataset, ingest_interval, env, None
        )

    @classmethod
    def _finish(
        cls,
        db_path: Path,
        spool_path: Path,
        default_dataset: str | None,
        ingest_interval: float | None,
        env: Mapping[str, str],
        lake: Lake | None,
    ) -> Settings:
        dataset = load_default_dataset(default_dataset, env)
        interval = ingest_interval
        if interval is None:
            raw = env.get("FINETUNER_INGEST_INTERVAL", "1.0")
            try:
                interval = float(raw)
            except ValueError:
                raise ConfigurationError(
                    f"FINETUNER_INGEST_INTERVAL must be a number of seconds, got {raw!r}"
                ) from None
        if not math.isfinite(interval) or interval < 0:
            raise ConfigurationError(
                f"the ingest interval must be a finite number of seconds >= 0, got {interval!r}"
            )
        return cls(
            db_path=db_path,
            spool_dir=spool_path,
            default_dataset=dataset,
            ingest_interval=interval,
            max_content_size=load_max_content_size(env),
            lake=lake,
        )
