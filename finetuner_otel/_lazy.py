"""Names of a package loaded on first use (PEP 562), for a package's ``__getattr__``: so that
``import finetuner_otel`` (or ``finetuner_otel.store``) loads neither DuckDB nor what only some
of its names need."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any


def load(package: str, where: Mapping[str, str], name: str, namespace: dict[str, Any]) -> Any:
    """``name`` from the module of ``package`` that ``where`` gives for it (relative), kept in
    the package's ``namespace`` so it is loaded once; AttributeError for a name not there."""
    module = where.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, package), name)
    namespace[name] = value
    return value
