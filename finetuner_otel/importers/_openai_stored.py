"""Import OpenAI's stored chat completions (calls made with ``store=True``) into the store.

The wire format is OpenAI's: ``client.chat.completions.list(after=, limit=, order="asc",
model=, metadata={...})`` pages the stored completions oldest first (``has_more``, and the last
id of a page is the next page's ``after``); each completion's input messages come from
``client.chat.completions.messages.list(id)``, paged the same way. Both go through the SDK's
own resources, so its retries (``max_retries``, honouring ``retry-after`` on a 429) and errors
apply; on top of them a page that still fails with a rate limit, a server error or a lost
connection is tried again with exponential backoff (``retries`` times from ``backoff``
seconds, or the ``retry-after`` the server asked for), since an import of many pages should
outlast a minute of throttling.

Idempotent: a completion already imported (by its id, ``finetuner.import.id``) adds nothing.
Resumable: each page is written before the next is read, and every row keeps the ``after``
cursor of its page (``finetuner.import.cursor``) and the filters it was listed with
(``finetuner.import.query``), so a run stopped anywhere starts again at the page it was in.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

from .._errors import ConfigurationError
from .._json import dumps
from .._progress import Progress
from .._retry import retryable, wait_before
from ..store import Store
from ._write import (
    FINISH_REASON,
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

if TYPE_CHECKING:
    import openai

SOURCE_NAME = "openai-stored"
CURSOR = "finetuner.import.cursor"
QUERY = "finetuner.import.query"
PAGE_SIZE = 100  # the API's largest page
OnPage = Callable[[int, int], None]  # (pages done, rows added by that page)


class _Pager:
    """The API's pages, with backoff on top of the SDK's own retries."""

    def __init__(
        self, client: openai.OpenAI, page_size: int, retries: int, backoff: float, out: Progress
    ) -> None:
        self.client = client
        self.page_size = page_size
        self.retries = retries
        self.backoff = backoff
        self.out = out

    def call(self, what: str, fn: Callable[[], Any]) -> Any:
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as exc:
                if not retryable(exc) or attempt >= self.retries:
                    raise
                wait = wait_before(exc, attempt, self.backoff)
                attempt += 1
                self.out.note(f"{what}: {type(exc).__name__}; trying again in {wait:.1f} s")
                time.sleep(min(wait, 300.0))

    def completions(self, after: str | None, filters: Mapping[str, Any]) -> Any:
        def page() -> Any:
            kwargs = {**filters, "limit": self.page_size, "order": "asc"}
            if after:
                kwargs["after"] = after
            return self.client.chat.completions.list(**kwargs)

        return self.call("listing stored completions", page)

    def messages(self, completion_id: str) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            pages = self.client.chat.completions.messages.list(
                completion_id, limit=PAGE_SIZE, order="asc"
            )
            return [m.to_dict() for m in pages]  # every page of them

        result: list[dict[str, Any]] = self.call(f"messages of {completion_id}", read)
        return result


def _input_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """A stored input message as a chat message: its content parts where it had them."""
    converted = dict(message)
    if message.get("content_parts"):
        converted["content"] = message["content_parts"]
    return clean_message(converted)


def completion_row(
    completion: Mapping[str, Any],
    messages: list[dict[str, Any]],
    *,
    fallback: str | None,
    cursor: str,
    query: str,
) -> Row:
    """One stored completion as an example: its input messages, its first choice the target."""
    choice = (completion.get("choices") or [{}])[0]
    target = clean_message({"role": "assistant", **(choice.get("message") or {})})
    metadata = completion.get("metadata") or {}
    dataset, refused = pick_dataset(metadata, fallback)
    record: dict[str, Any] = {"messages": [*map(_input_message, messages), target]}
    if completion.get("tools"):
        record["tools"] = completion["tools"]
    attributes = provenance(
        SOURCE_NAME,
        str(completion["id"]),
        **{
            "finetuner.import.metadata": dict(metadata) or None,
            "finetuner.import.created": completion.get("created"),
            FINISH_REASON: choice.get("finish_reason"),
            "finetuner.import.usage": completion.get("usage"),
            "finetuner.import.dataset_refused": refused,
            CURSOR: cursor,
            QUERY: query,
        },
    )
    return Row(record, dataset, completion.get("model"), attributes)


def resume_cursor(store: Store, query: str) -> str | None:
    """The ``after`` of the page the last run of this query was in (None: the first page)."""
    if not store.exists() and not store.pending():
        return None
    rows = store.sql(
        f"SELECT attributes->>'{CURSOR}' FROM calls WHERE source = 'import' "
        f"AND attributes->>'finetuner.import.source' = ? AND attributes->>'{QUERY}' = ? "
        "ORDER BY started_at DESC LIMIT 1",
        [SOURCE_NAME, query],
    ).rows
    return (rows[0][0] or None) if rows else None


def _filters(metadata: Mapping[str, str] | None, model: str | None) -> dict[str, Any]:
    if metadata is not None and not (
        isinstance(metadata, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise ConfigurationError(
            f"metadata filters are text keys and values, e.g. {{'dataset_name': 'support'}}; "
            f"got {metadata!r}"
        )
    filters: dict[str, Any] = {}
    if metadata:
        filters["metadata"] = dict(metadata)
    if model:
        filters["model"] = model
    return filters


def _page(pager: _Pager, after: str | None, filters: Mapping[str, Any]) -> tuple[Any, str | None]:
    """The page after ``after``, and the cursor it was read with; from the start when the
    API no longer knows that id (the completion was deleted since): the rows stored already
    are skipped by id."""
    import openai

    try:
        return pager.completions(after, filters), after
    except (openai.BadRequestError, openai.NotFoundError):
        if after is None:
            raise
        pager.out.note(f"the cursor {after} is gone; listing from the first page")
        return pager.completions(None, filters), None


def _check_sizes(page_size: int, concurrency: int) -> None:
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= 100:
        raise ConfigurationError(f"page_size is 1 to 100 (the API's limit), got {page_size!r}")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigurationError(f"concurrency must be a whole number >= 1, got {concurrency!r}")


def import_openai_stored(
    client: openai.OpenAI,
    store: Store,
    *,
    metadata: Mapping[str, str] | None = None,
    model: str | None = None,
    since: int | float | None = None,
    dataset: str | None = None,
    page_size: int = PAGE_SIZE,
    concurrency: int = 8,
    retries: int = 5,
    backoff: float = 1.0,
    progress: bool | TextIO = True,
    on_page: OnPage | None = None,
) -> ImportSummary:
    """Import the stored chat completions that match ``metadata`` (every key=value) and
    ``model``, created at or after ``since`` (a Unix time; the API has no such filter, so
    older ones are listed but not fetched), into ``store``. A completion's dataset is its
    ``dataset`` or ``dataset_name`` metadata, else ``dataset``, else ``default``.
    Each page holds ``page_size`` completions (at most 100), whose messages are read
    ``concurrency`` at a time. ``on_page(pages, added)`` is called after each page is stored."""
    fallback = check_fallback(dataset)
    _check_sizes(page_size, concurrency)
    filters = _filters(metadata, model)
    query = dumps(filters, sort_keys=True)
    known = stored_ids(store, SOURCE_NAME)
    after = resume_cursor(store, query)
    added: dict[str, int] = {}
    skipped = pages = 0
    with (
        Progress(progress, "openai stored completions", unit=" completions") as bar,
        concurrent.futures.ThreadPoolExecutor(concurrency) as pool,
    ):
        pager = _Pager(client, page_size, retries, backoff, bar)
        while True:
            page, after = _page(pager, after, filters)
            wanted = [
                c for c in page.data if c.id not in known and (since is None or c.created >= since)
            ]
            skipped += len(page.data) - len(wanted)
            inputs = pool.map(pager.messages, [c.id for c in wanted])
            rows = [
                completion_row(c.to_dict(), m, fallback=fallback, cursor=after or "", query=query)
                for c, m in zip(wanted, inputs, strict=True)
            ]
            merge(added, write_rows(store, rows))
            known.update(row.attributes["finetuner.import.id"] for row in rows)
            pages += 1
            bar.show(f"openai stored completions: {sum(added.values())} added, {skipped} skipped")
            if on_page is not None:
                on_page(pages, len(rows))
            if not page.data or page.has_more is False:
                break
            after = page.data[-1].id
    return ImportSummary(SOURCE_NAME, sum(added.values()), skipped, added, pages)
