"""What differs between the OpenAI APIs we trace: how a request, a whole result and a stream
become span attributes. Everything else (spans, streams, errors, datasets) is shared."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from . import _content, _responses
from ._buffers import ChatStreamBuffer
from ._options import CaptureOptions


class StreamBuffer(Protocol):
    def add(self, event: Any) -> None: ...
    def finished(self) -> bool: ...
    def attributes(self, incomplete: bool) -> dict[str, Any]: ...


@dataclass
class Api:
    name: str
    request_attributes: Callable[[Mapping[str, Any], Any, CaptureOptions], dict[str, Any]]
    response_attributes: Callable[[Any, CaptureOptions], dict[str, Any]]
    is_result: Callable[[Any], bool]
    new_buffer: Callable[[CaptureOptions], StreamBuffer]


CHAT = Api(
    "chat.completions",
    _content.request_attributes,
    _content.response_attributes,
    _content.is_completion,
    ChatStreamBuffer,
)
RESPONSES = Api(
    "responses",
    _responses.request_attributes,
    _responses.response_attributes,
    _responses.is_response,
    _responses.ResponsesStreamBuffer,
)
