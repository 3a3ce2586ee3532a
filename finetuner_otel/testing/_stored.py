"""OpenAI's stored chat completions on the local server: ``server.stored_completions``.

The read side of ``store=True`` as OpenAI documents it: ``GET /v1/chat/completions`` lists the
stored completions (query ``after``, ``limit`` (default 20, at most 100), ``order`` (``asc`` by
creation time, the default, or ``desc``), ``model``, and ``metadata[key]=value`` filters, all of
which must match), ``GET /v1/chat/completions/{id}`` gives one, and ``GET
/v1/chat/completions/{id}/messages`` pages its input messages (``after``, ``limit`` (default
20), ``order``). Each list is ``{"object": "list", "data": [...], "first_id", "last_id",
"has_more"}``; a message has its own ``id`` and ``content_parts`` (null when the content was
text). A test seeds completions with ``add(...)`` and makes the server misbehave with
``fail_next(...)`` (429 with ``retry-after``, 500, ...) or ``fail_after_pages(n)`` (every list
page after the first ``n`` fails, as a server that goes away mid-import).
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

_ids = itertools.count(1)
_MAX_LIMIT = 100


def _error(message: str, kind: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


class StoredCompletionsAPI:
    """Stored chat completions, listed and paged as OpenAI's API does (see the module doc)."""

    def __init__(self) -> None:
        self.completions: list[dict[str, Any]] = []  # in creation order
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[str] = []  # the paths (with queries) asked for
        self._failures: deque[tuple[int, dict[str, str]]] = deque()
        self._pages_left: int | None = None
        self._fail_status = 500
        self._lock = threading.Lock()

    # --- seeding ------------------------------------------------------------------------------

    def add(
        self,
        messages: Sequence[Mapping[str, Any]],
        answer: str | Mapping[str, Any],
        *,
        model: str = "gpt-4o-mini-2024-07-18",
        metadata: Mapping[str, str] | None = None,
        created: int | None = None,
        finish_reason: str = "stop",
    ) -> str:
        """Store a completion of ``messages`` answered with ``answer`` (text, or an assistant
        message with tool_calls); returns its id. ``created`` defaults to one second after
        the last one, so the creation order is the order of ``add`` calls."""
        with self._lock:
            completion_id = f"chatcmpl-stored{next(_ids):06d}"
            if created is None:
                last = self.completions[-1]["created"] if self.completions else 1_750_000_000
                created = last + 1
            message: dict[str, Any] = (
                {"role": "assistant", "content": answer}
                if isinstance(answer, str)
                else {"role": "assistant", "content": None, **answer}
            )
            message.setdefault("refusal", None)
            message.setdefault("annotations", [])
            self.completions.append(
                _completion(completion_id, created, model, message, finish_reason, metadata)
            )
            self.messages[completion_id] = [
                _stored_message(completion_id, index, m) for index, m in enumerate(messages)
            ]
            self.completions.sort(key=lambda c: c["created"])
            return completion_id

    def fail_next(self, *statuses: int, retry_after: float = 0) -> None:
        """Answer the next requests with these error statuses (a 429 carries retry-after)."""
        with self._lock:
            for status in statuses:
                headers = {"retry-after": str(retry_after)} if status == 429 else {}
                self._failures.append((status, headers))

    def fail_after_pages(self, pages: int | None, status: int = 500) -> None:
        """Serve ``pages`` more list pages, then fail every list request with ``status``
        (``None``: stop failing)."""
        with self._lock:
            self._pages_left = pages
            self._fail_status = status

    # --- routing ------------------------------------------------------------------------------

    def routes(self, path: str) -> bool:
        parts = urlsplit(path).path.rstrip("/").split("/")
        return parts[:4] == ["", "v1", "chat", "completions"] and len(parts) in (4, 5, 6)

    def handle(self, path: str) -> tuple[int, Any, dict[str, str]]:
        """The answer to ``GET path``: (status, JSON body, extra headers)."""
        url = urlsplit(path)
        parts = url.path.rstrip("/").split("/")[4:]
        query = dict(parse_qsl(url.query))
        with self._lock:
            self.requests.append(path)
            if self._failures:
                status, headers = self._failures.popleft()
                kind = "rate_limit_exceeded" if status == 429 else "server_error"
                return (
                    status,
                    _error("Rate limit reached" if status == 429 else kind, kind),
                    headers,
                )
            try:
                if not parts:
                    return self._list(query)
                if parts[0] not in self.messages:
                    message = f"No chat completion found with id '{parts[0]}'."
                    return 404, _error(message, "invalid_request_error"), {}
                if len(parts) == 1:
                    return 200, self._by_id(parts[0]), {}
                if parts[1] == "messages":
                    return 200, _page(self.messages[parts[0]], query), {}
                return 404, _error(f"Unknown path {url.path}", "invalid_request_error"), {}
            except _BadRequest as exc:
                return 400, _error(str(exc), "invalid_request_error", exc.param), {}

    def _by_id(self, completion_id: str) -> dict[str, Any]:
        return next(c for c in self.completions if c["id"] == completion_id)

    def _list(self, query: Mapping[str, str]) -> tuple[int, Any, dict[str, str]]:
        if self._pages_left is not None:
            if self._pages_left <= 0:
                status = self._fail_status
                return status, _error("The server had an error", "server_error"), {}
            self._pages_left -= 1
        wanted = {
            k[len("metadata[") : -1]: v for k, v in query.items() if k.startswith("metadata[")
        }
        found = [
            c
            for c in self.completions
            if ("model" not in query or c["model"] == query["model"])
            and all((c["metadata"] or {}).get(k) == v for k, v in wanted.items())
        ]
        return 200, _page(found, query), {}


class _BadRequest(Exception):
    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def _page(items: list[dict[str, Any]], query: Mapping[str, str]) -> dict[str, Any]:
    """One page of ``items`` (in creation order) as the query asks, in OpenAI's list shape."""
    order = query.get("order", "asc")
    if order not in ("asc", "desc"):
        raise _BadRequest(f"Invalid value for 'order': {order!r}; use 'asc' or 'desc'.", "order")
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        raise _BadRequest("Invalid value for 'limit': expected an integer.", "limit") from None
    if not 1 <= limit <= _MAX_LIMIT:
        raise _BadRequest(f"'limit' must be between 1 and {_MAX_LIMIT}.", "limit")
    ordered = items if order == "asc" else items[::-1]
    start = 0
    if "after" in query:
        ids = [item["id"] for item in ordered]
        if query["after"] not in ids:
            raise _BadRequest(f"No object found with id '{query['after']}' for 'after'.", "after")
        start = ids.index(query["after"]) + 1
    data = ordered[start : start + limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": start + limit < len(ordered),
    }


def _completion(
    completion_id: str,
    created: int,
    model: str,
    message: dict[str, Any],
    finish_reason: str,
    metadata: Mapping[str, str] | None,
) -> dict[str, Any]:
    """A stored completion as the list and retrieve endpoints give it."""
    text = message.get("content") or ""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": len(str(text).split()),
            "total_tokens": 10 + len(str(text).split()),
        },
        "metadata": dict(metadata) if metadata else None,
        "request_id": f"req_{completion_id[-6:]}",
        "service_tier": "default",
        "system_fingerprint": None,
        "tool_choice": None,
        "seed": 4944116822809979520,
        "temperature": 1.0,
        "top_p": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "input_user": None,
        "tools": None,
    }


def _stored_message(completion_id: str, index: int, message: Mapping[str, Any]) -> dict[str, Any]:
    """An input message as the messages endpoint gives it: its id, and content parts apart."""
    content = message.get("content")
    stored: dict[str, Any] = {"id": f"{completion_id}-{index}", **message}
    if isinstance(content, list):
        text = "".join(p.get("text", "") for p in content if p.get("type") == "text")
        stored["content"] = text
        stored["content_parts"] = content
    else:
        stored["content_parts"] = None
    stored.setdefault("name", None)
    return stored
