"""What may join a traced call besides recording it: shadow calls and routes (``finetuner_otel
.shadow``), both opt-in. The instrumentation knows them only by these two small protocols.

``Extensions`` belongs to one instrumentation (it is carried in its ``CaptureOptions``); its
hooks are held in tuples replaced whole under a lock, so the per-call check on the hot path is
one attribute read of an empty tuple when nothing is registered.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

# Baggage keys for the calls a shadow makes: which production call it shadows.
SHADOW_OF_KEY = "finetuner.shadow.of"


@dataclass(frozen=True)
class ShadowRequest:
    """A completed production call, offered to the shadows: enough to call again."""

    api: str  # "chat.completions" | "responses"
    client: Any  # the SDK client that made the call (its resource's ``_client``)
    kwargs: Mapping[str, Any]  # the request as recorded (our keyword taken out)
    dataset: str
    call_ref: str  # trace id and span id, hex: what the candidate's call points back to


class ShadowHook(Protocol):
    def samples(self, dataset: str) -> bool:
        """Whether this completed call of ``dataset`` is one to repeat (on the user's thread,
        after every call: cheap, never raises)."""

    def offer(self, request: ShadowRequest) -> None:
        """A call ``samples`` chose: queue it (cheap, never blocks or raises)."""


class RouteHook(Protocol):
    def choose(self, dataset: str, model: Any) -> str | None:
        """The model to send this call to instead, or None. Cheap; never raises."""


class Owner(Protocol):
    """What set the instrumentation up (``instrument()``'s handle): where its calls are stored."""

    def flush(self, timeout: float = 30.0) -> bool: ...
    def open_store(self) -> Any: ...


class Extensions:
    """The shadows and routes of one instrumentation, and its ``owner`` (when ``instrument()``
    set it up: routes read the live comparison from its store)."""

    def __init__(self) -> None:
        self.shadows: tuple[ShadowHook, ...] = ()
        self.routes: tuple[RouteHook, ...] = ()
        self.owner: Owner | None = None
        self._lock = threading.Lock()

    def add_shadow(self, hook: ShadowHook) -> None:
        with self._lock:
            self.shadows = (*self.shadows, hook)

    def remove_shadow(self, hook: ShadowHook) -> None:
        with self._lock:
            self.shadows = tuple(h for h in self.shadows if h is not hook)

    def add_route(self, hook: RouteHook) -> None:
        with self._lock:
            self.routes = (*self.routes, hook)

    def remove_route(self, hook: RouteHook) -> None:
        with self._lock:
            self.routes = tuple(h for h in self.routes if h is not hook)

    def close(self) -> None:
        """The instrumentation is going away: every hook is told (``close()``) and dropped."""
        with self._lock:
            hooks: tuple[Any, ...] = (*self.shadows, *self.routes)
            self.shadows, self.routes = (), ()
        for hook in hooks:
            close = getattr(hook, "close", None)
            if callable(close):
                close()
