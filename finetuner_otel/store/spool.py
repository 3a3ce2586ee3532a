"""The store's spool, for the code that writes calls into a store from outside a ``Store``: the
OTel exporter (``finetuner_otel.exporters``) and receivers.

A call becomes one spool line by ``encode_row(CallRecord(...))`` (the one encoder of stored
rows; ``parse_json`` reads a JSON attribute for it), ``write_spool`` writes a batch of lines as
one file beside the store (owner-only, fsynced, renamed into place), and ``ingest`` moves every
spooled file into the store that ``Settings.store`` names: the DuckDB file when it is free, or
the lake. ``write_private`` writes any other file the same owner-only way.
"""

from ._lake import ingest_into as ingest
from ._rows import CallRecord, JSONValue, encode_row, parse_json
from ._spool import pending_files as pending
from ._spool import write_private, write_spool

__all__ = [
    "CallRecord",
    "JSONValue",
    "encode_row",
    "ingest",
    "parse_json",
    "pending",
    "write_private",
    "write_spool",
]
