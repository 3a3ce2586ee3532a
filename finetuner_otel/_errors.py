"""The one exception hierarchy of finetuner-otel.

::

    FinetunerError
     ├── ConfigurationError     a setting (argument or FINETUNER_* variable) is invalid
     └── StoreError             the DuckDB store cannot be used as asked
          ├── StoreLockedError  another process holds the store for writing right now
          ├── SchemaError       the store was written by a newer finetuner-otel
          └── DatasetNotFoundError   no dataset of that name in the store

The instrumentation never raises any of these into the user's OpenAI call: it logs and carries on.
"""

from __future__ import annotations


class FinetunerError(Exception):
    """Base class of every error raised by finetuner-otel."""


class ConfigurationError(FinetunerError, ValueError):
    """A setting, given as an argument or a ``FINETUNER_*`` variable, is invalid."""


class StoreError(FinetunerError):
    """The DuckDB store cannot be used as asked."""


class StoreLockedError(StoreError):
    """Another process holds the DuckDB file for writing; retry, or stop that process."""


class SchemaError(StoreError):
    """The store's schema is newer than this version of finetuner-otel understands."""


class DatasetNotFoundError(StoreError, KeyError):
    """No dataset of that name exists in the store."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class CallNotFoundError(StoreError, KeyError):
    """No call with that id in the store."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""
