"""The calls our instrumentor traced in this process, so that a call traced by another GenAI
instrumentation as well (the contrib OpenAI instrumentation, OpenLLMetry, ...) is stored once.

Those instrumentations wrap the same SDK method, inside or outside ours, in any number and
order, so their span of the same call is an ancestor or a descendant of ours, not always a
direct one. What they share with ours is the trace, the model and the time: a chat span of
another instrumentation that overlaps in time one of our calls to the same model in the same
trace is the same call, recorded again, and the exporter skips it.

Bounded: only the calls of the most recent traces are remembered. A span of another
instrumentation is checked when it is exported, at most a span queue behind (``instrument()``'s
processor queues 16,384 spans, the SDK's default 2,048): twice that many traces are kept (about
14 MB at the bound).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

_MAX_TRACES = 32768


class OurCall:
    __slots__ = ("end", "model", "start")

    def __init__(self, start: int, model: object) -> None:
        self.start = start
        self.end: int | None = None  # still running
        self.model = model


# A trace's one call (the usual case), or a list of its calls.
_calls: OrderedDict[int, OurCall | list[OurCall]] = OrderedDict()
_lock = threading.Lock()


def note_our_call(trace_id: int, start: int, model: object) -> OurCall:
    """Remember a call of ours as it starts; set ``.end`` on what this returns when it ends."""
    call = OurCall(start, model)
    with _lock:
        known = _calls.get(trace_id)
        if known is None:
            _calls[trace_id] = call
            if len(_calls) > _MAX_TRACES:
                _calls.popitem(last=False)
        elif isinstance(known, list):
            known.append(call)
        else:
            _calls[trace_id] = [known, call]
    return call


def traced_by_us_too(trace_id: int, start: int, end: int, model: object) -> bool:
    """For a span of another instrumentation: does a call of ours record the same call?"""
    known = _calls.get(trace_id)
    if known is None:
        return False
    for call in list(known) if isinstance(known, list) else (known,):
        if call.model == model and call.start <= end and (call.end is None or start <= call.end):
            return True
    return False
