"""Settings, read once from arguments and the environment.

=============================  ========================  ======================================
variable                       default                   meaning
=============================  ========================  ======================================
``FINETUNER_DB``               ``./finetuner.duckdb``    the DuckDB store
``FINETUNER_SPOOL_DIR``        ``<FINETUNER_DB>.spool``  where spans wait for ingest
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


@dataclass(frozen=True)
class Settings:
    """Where the store lives and how capture behaves."""

    db_path: Path
    spool_dir: Path
    default_dataset: str = DEFAULT_DATASET
    ingest_interval: float = 1.0
    max_content_size: int = DEFAULT_MAX_CONTENT_SIZE

    @classmethod
    def load(
        cls,
        db: str | os.PathLike[str] | None = None,
        *,
        spool_dir: str | os.PathLike[str] | None = None,
        default_dataset: str | None = None,
        ingest_interval: float | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Arguments win over ``FINETUNER_*`` variables, which win over the defaults."""
        env = os.environ if environ is None else environ
        db_path = Path(db if db is not None else env.get("FINETUNER_DB") or DEFAULT_DB)
        if str(db_path).strip() == "" or db_path.is_dir():
            raise ConfigurationError(
                f"the store path {str(db_path)!r} is a directory or empty; "
                f"give a file path such as ./finetuner.duckdb (argument db= or FINETUNER_DB)"
            )
        spool = spool_dir if spool_dir is not None else env.get("FINETUNER_SPOOL_DIR")
        spool_path = Path(spool) if spool else db_path.with_name(db_path.name + ".spool")
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
            db_path=db_path.absolute(),
            spool_dir=spool_path.absolute(),
            default_dataset=dataset,
            ingest_interval=interval,
            max_content_size=load_max_content_size(env),
        )
