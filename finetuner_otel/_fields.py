"""Reading OpenAI request and response values, whether plain dicts or the SDK's pydantic objects.

The instrumentation reads what the user passed and what the SDK returned; the store's import
reads JSON lines. Both go through these, so a value reads the same whichever shape it came in.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import pydantic

try:  # sentinels for "argument not given"; Omit appeared in later SDK releases
    from openai import NotGiven as _NotGiven
except ImportError:  # pragma: no cover - every supported SDK has it
    _NotGiven = ()  # type: ignore[assignment,misc]
try:
    from openai import Omit as _Omit
except ImportError:  # pragma: no cover - older SDKs
    _Omit = ()  # type: ignore[assignment,misc]
_SENTINELS: tuple[type, ...] = tuple(t for t in (_NotGiven, _Omit) if isinstance(t, type))


def given(value: Any) -> bool:
    """False for None and the SDK's NotGiven/Omit sentinels."""
    return value is not None and not isinstance(value, _SENTINELS)


_MAPPING, _MODEL, _OBJECT = 0, 1, 2
_ACCESS: dict[type, int] = {dict: _MAPPING}
_MISSING = object()


def _access_for(obj: Any) -> int:
    if isinstance(obj, Mapping):
        return _MAPPING
    if isinstance(obj, pydantic.BaseModel) and isinstance(getattr(obj, "__dict__", None), dict):
        return _MODEL
    return _OBJECT


def field(obj: Any, key: str) -> Any:
    """``obj[key]`` for mappings, ``obj.key`` for SDK (pydantic) objects, None when absent.

    The kind of access is found once per type (ABC checks are slow), and a pydantic model's
    fields are read from its ``__dict__`` (a missing one would cost a raised AttributeError).
    """
    kind = type(obj)
    access = _ACCESS.get(kind)
    if access is None:
        access = _ACCESS[kind] = _access_for(obj)
    if access == _MAPPING:
        return obj.get(key)
    if access == _MODEL:
        value = obj.__dict__.get(key, _MISSING)
        if value is _MISSING:
            extra = obj.__pydantic_extra__  # fields the SDK does not know (extra="allow")
            return extra.get(key) if extra else None
        return value
    return getattr(obj, key, None)


def fields_of(obj: Any) -> Mapping[str, Any] | None:
    """All of ``obj``'s fields at once, where that is a plain read: a mapping itself, or an SDK
    (pydantic) object's ``__dict__`` (declared fields only; use ``field`` for extras). None for
    other objects. For the per-chunk path of streams, where every call counts."""
    kind = type(obj)
    access = _ACCESS.get(kind)
    if access is None:
        access = _ACCESS[kind] = _access_for(obj)
    if access == _MAPPING:
        return obj  # type: ignore[no-any-return]
    if access == _MODEL:
        return obj.__dict__  # type: ignore[no-any-return]
    return None


def getter(obj: Any) -> Callable[[str], Any]:
    """``field(obj, key)`` for reading several keys of one object: a plain ``.get`` where
    ``fields_of`` gives one (declared fields), else ``field`` itself."""
    values = fields_of(obj)
    return values.get if values is not None else functools.partial(field, obj)
