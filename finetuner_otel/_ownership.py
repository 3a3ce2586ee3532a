"""The calls our instrumentor traced in this process, so that a call traced by another GenAI
instrumentation as well (the contrib OpenAI instrumentation, OpenLLMetry, ...) is stored once.

Those instrumentations wrap the same SDK method, inside or outside ours, in any number and
order, so their span of the same call is an ancestor or a descendant of ours, not always a
direct one. What they share with ours is the trace, the model and the time: a chat span of
another instrumentation that overlaps in time one of our calls to the same model in the same
trace is the same call, recorded again, and the exporter skips it.

A framework's own tracing (litellm's callback, the Agents SDK's, ...) may record the same call in
a trace of its own. Then the response id says it: the API gives every response its own, so a span
of another instrumentation with the response id of a call of ours is that call again, and two
calls with the same prompt at the same moment, which have two ids, are never taken for one.

Bounded: only the calls of the most recent traces are remembered. A span of another
instrumentation is checked when it is exported: as it ends under ``instrument()``'s processor
(which has no queue), at most a span queue behind under a BatchSpanProcessor (the SDK's default
2,048; 16,384 at most here): twice that many traces are kept (about 14 MB at the bound).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

_MAX_TRACES = 32768
_MAX_RESPONSES = 32768


class OurCall:
    __slots__ = ("end", "model", "start")

    def __init__(self, start: int, model: object) -> None:
        self.start = start
        self.end: int | None = None  # still running
        self.model = model


# A trace's one call (the usual case), or a list of its calls.
_calls: OrderedDict[int, OurCall | list[OurCall]] = OrderedDict()
_lock = threading.Lock()
# The response ids of our recent calls (a dict as an ordered, bounded set).
_responses: dict[str, None] = {}


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


def note_our_response(response_id: object) -> None:
    """Remember the response id one of our calls recorded."""
    if isinstance(response_id, str) and response_id:
        with _lock:
            _responses[response_id] = None
            if len(_responses) > _MAX_RESPONSES:
                del _responses[next(iter(_responses))]


def traced_by_us_too(
    trace_id: int, start: int, end: int, model: object, response_id: object = None
) -> bool:
    """For a span of another instrumentation: does a call of ours record the same call?"""
    if isinstance(response_id, str) and response_id in _responses:
        return True
    known = _calls.get(trace_id)
    if known is None:
        return False
    for call in list(known) if isinstance(known, list) else (known,):
        if call.model == model and call.start <= end and (call.end is None or start <= call.end):
            return True
    return False
