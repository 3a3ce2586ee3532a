"""Import the export files of OpenPipe and Langfuse into the store.

**OpenPipe** (docs.openpipe.ai, Features > Datasets > Exporting data): a dataset export is JSONL,
one entry a line, with ``messages`` (the whole chat, its last message the assistant's answer),
``tools``, ``tool_choice`` and ``split`` (the train or test split). An entry has no id, so a row's
``finetuner.import.id`` is the SHA-256 of the entry's canonical JSON: the same entry imported
twice, from one file or two, is stored once. ``split`` is kept as ``finetuner.import.split``.

**Langfuse** (langfuse.com, Export from UI; the batch export of the observations table, in
langfuse/langfuse ``worker/src/features/database-read-stream/observation-stream.ts``): a JSON
array, or JSONL, of observations with ``id``, ``traceId``, ``type``, ``name``, ``startTime``,
``model`` (or ``providedModelName``), ``modelParameters``, ``input``, ``output``, ``metadata``,
``usageDetails`` and more. Only ``GENERATION`` observations are calls; their ``input`` is the
chat (a list of messages, or an object with ``messages`` and ``tools``, or a prompt string)
and their ``output`` the answer (a message, or its text). The observation id makes re-runs add
nothing; its ``dataset``/``dataset_name`` metadata picks the dataset, as for OpenAI's.

Both are read whole first: a line that is not JSON, or an entry that is no chat, stops the
import before anything is written, with the line and what to fix. Rows are then written a
batch at a time, so a run stopped part-way is finished by running it again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from .._errors import ConfigurationError
from .._json import dumps
from .._progress import Progress
from ..store import Store
from ._write import (
    ImportSummary,
    Row,
    check_fallback,
    clean_message,
    merge,
    pick_dataset,
    provenance,
    stored_ids,
    write_rows,
)

# Rows per batch, each written by add_examples a MiB of content at a time (_write.py): a run
# stopped part-way loses at most one batch's work.
BATCH = 1000
OnBatch = Callable[[int, int], None]  # (batches done, rows added by that batch)
FILE = "finetuner.import.file"
LINE = "finetuner.import.line"


def _entries(path: Path) -> Iterator[tuple[int, Any]]:
    """The JSON values of a JSONL file or of one JSON array, with their line (or index)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"{path} does not exist; give the path of the export") from None
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"{path} is not UTF-8 text ({exc}); give the JSON export") from exc
    if text.lstrip().startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{path} is not a JSON array: {exc}") from exc
        yield from enumerate(values, 1)
        return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(
                f"{path} line {number} is not JSON ({exc.msg}); a JSONL export has one JSON "
                f"object a line (a CSV export cannot be imported: export as JSON or JSONL)"
            ) from exc


def _bad(path: Path, line: int, what: str) -> ConfigurationError:
    return ConfigurationError(f"{path} entry {line}: {what}; nothing was imported")


def openpipe_row(path: Path, line: int, entry: Any, fallback: str | None) -> Row:
    """One OpenPipe dataset entry as an example."""
    messages = entry.get("messages") if isinstance(entry, Mapping) else None
    if (
        not isinstance(messages, list)
        or not messages
        or not all(isinstance(m, Mapping) for m in messages)
    ):
        raise _bad(path, line, "an OpenPipe entry needs 'messages', a list of chat messages")
    if messages[-1].get("role") != "assistant":
        raise _bad(path, line, "its last message must be the assistant's answer (the target)")
    record: dict[str, Any] = {"messages": [clean_message(m) for m in messages]}
    if entry.get("tools"):
        record["tools"] = entry["tools"]
    digest = hashlib.sha256(dumps(entry, sort_keys=True).encode()).hexdigest()
    attributes = provenance(
        "openpipe",
        f"sha256:{digest}",
        **{FILE: str(path), LINE: line, "finetuner.import.split": entry.get("split")},
    )
    return Row(record, fallback or "default", None, attributes)


def _chat_input(value: Any) -> tuple[list[dict[str, Any]], Any]:
    """A Langfuse generation's input as chat messages, and the tools it offered."""
    tools = None
    if isinstance(value, Mapping) and isinstance(value.get("messages"), list):
        tools = value.get("tools")
        value = value["messages"]
    if isinstance(value, str):
        return [{"role": "user", "content": value}], None
    if isinstance(value, Mapping) and "role" in value:
        value = [value]
    if (
        isinstance(value, list)
        and value
        and all(isinstance(m, Mapping) and "role" in m for m in value)
    ):
        return [clean_message(m) for m in value], tools
    raise ValueError("its input is not a chat (messages, or a prompt string)")


def _chat_output(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"role": "assistant", "content": value}
    if isinstance(value, Mapping) and isinstance(value.get("choices"), list) and value["choices"]:
        value = value["choices"][0].get("message")
    if isinstance(value, Mapping) and ("content" in value or "tool_calls" in value):
        return clean_message({**value, "role": "assistant"})
    raise ValueError("its output is not an answer (a message, or its text)")


def langfuse_row(path: Path, line: int, entry: Any, fallback: str | None) -> Row | None:
    """One Langfuse observation as an example; None for one that is not a generation."""
    if not isinstance(entry, Mapping) or not entry.get("id"):
        raise _bad(path, line, "a Langfuse observation is an object with an 'id'")
    if str(entry.get("type", "GENERATION")).upper() != "GENERATION":
        return None
    try:
        messages, tools = _chat_input(entry.get("input"))
        target = _chat_output(entry.get("output"))
    except ValueError as exc:
        raise _bad(path, line, f"generation {entry['id']}: {exc}") from None
    found = entry.get("metadata")
    metadata: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    dataset, refused = pick_dataset(metadata, fallback)
    record: dict[str, Any] = {"messages": [*messages, target]}
    if tools:
        record["tools"] = tools
    attributes = provenance(
        "langfuse",
        str(entry["id"]),
        **{
            FILE: str(path),
            LINE: line,
            "finetuner.import.trace_id": entry.get("traceId"),
            "finetuner.import.name": entry.get("name"),
            "finetuner.import.created": entry.get("startTime"),
            "finetuner.import.metadata": dict(metadata) or None,
            "finetuner.import.usage": entry.get("usageDetails") or entry.get("usage"),
            "finetuner.import.dataset_refused": refused,
        },
    )
    model = entry.get("model") or entry.get("providedModelName")
    return Row(record, dataset, model if isinstance(model, str) else None, attributes)


def _import_file(
    source: str,
    to_row: Callable[[Path, int, Any, str | None], Row | None],
    path: str | Path,
    store: Store,
    dataset: str | None,
    progress: bool | TextIO,
    on_batch: OnBatch | None,
    batch: int,
) -> ImportSummary:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigurationError(f"batch must be a whole number >= 1, got {batch!r}")
    fallback = check_fallback(dataset)
    file = Path(path)
    rows = [row for line, entry in _entries(file) if (row := to_row(file, line, entry, fallback))]
    known = stored_ids(store, source)
    new = [row for row in rows if row.attributes["finetuner.import.id"] not in known]
    unique = list({row.attributes["finetuner.import.id"]: row for row in new}.values())
    added: dict[str, int] = {}
    with Progress(progress, f"{source} {file.name}", total=len(unique), unit=" rows") as bar:
        for start in range(0, len(unique), batch):
            chunk = unique[start : start + batch]
            merge(added, write_rows(store, chunk))
            bar.show(f"{source} {file.name}", done=start + len(chunk))
            if on_batch is not None:
                on_batch(start // batch + 1, len(chunk))
    return ImportSummary(source, sum(added.values()), len(rows) - sum(added.values()), added)


def import_openpipe(
    path: str | Path,
    store: Store,
    *,
    dataset: str | None = None,
    progress: bool | TextIO = True,
    on_batch: OnBatch | None = None,
    batch: int = BATCH,
) -> ImportSummary:
    """Import an OpenPipe dataset export (JSONL) into ``dataset`` (default ``default``),
    ``batch`` rows at a time; ``on_batch(batches, added)`` is called after each is stored."""
    return _import_file("openpipe", openpipe_row, path, store, dataset, progress, on_batch, batch)


def import_langfuse(
    path: str | Path,
    store: Store,
    *,
    dataset: str | None = None,
    progress: bool | TextIO = True,
    on_batch: OnBatch | None = None,
    batch: int = BATCH,
) -> ImportSummary:
    """Import the generations of a Langfuse observations export (JSON or JSONL); each goes to
    its ``dataset``/``dataset_name`` metadata, else ``dataset``, else ``default``; written
    as ``import_openpipe`` writes."""
    return _import_file("langfuse", langfuse_row, path, store, dataset, progress, on_batch, batch)
