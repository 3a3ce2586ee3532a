"""The server behind ``finetuner_otel.testing``: stdlib HTTP, the OpenAI chat wire format."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from .._http import StdlibServer, listen, url_host
from ._finetuning import FineTuningAPI
from ._fireworks import FireworksAPI  # issue 20: Fireworks' fine-tuning API
from ._stored import StoredCompletionsAPI

if TYPE_CHECKING:
    import openai

_ids = itertools.count(1)


@dataclass(frozen=True)
class ToolCall:
    """A tool call the scripted assistant makes; ``arguments`` is the JSON text it sends."""

    name: str
    arguments: str = "{}"
    id: str | None = None


@dataclass(frozen=True)
class Reply:
    """A successful completion. ``content`` may be a list to give each of ``n`` choices its own."""

    content: str | list[str] | None = "OK"
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None  # default: "tool_calls" with tool calls, else "stop"
    model: str | None = None  # default: the requested model
    prompt_tokens: int | None = None  # default: a word count of the request
    completion_tokens: int | None = None
    chunk_size: int = 4  # characters of content per streamed chunk
    stream_cut_after: int | None = None  # streams: drop the connection after this many chunks
    reasoning: str | None = None  # Responses API: a reasoning summary before the answer


@dataclass(frozen=True)
class ErrorReply:
    """An API error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

    status: int
    message: str = "error"
    type: str | None = None
    code: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RawReply:
    """An HTTP response sent exactly as given (e.g. a recorded body of the real API)."""

    status: int
    body: str | bytes
    headers: Mapping[str, str] = field(default_factory=dict)


AnyReply = Reply | ErrorReply | RawReply
Responder = Callable[["RecordedRequest"], AnyReply]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    openai: OpenAIServer  # the server whose queue and APIs the handlers answer from

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client closing its keep-alive connection is not an error
        super().handle_error(request, client_address)


def echo_responder(request: RecordedRequest) -> AnyReply:
    """The default: answer with the last user message's text."""
    messages = (request.json or {}).get("messages") or []
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return Reply(f"You said: {content}")
    return Reply("Hello!")


def _words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_words(v) for v in value)
    if isinstance(value, dict):
        return sum(_words(v) for k, v in value.items() if k in ("content", "text", "arguments"))
    return 0


class OpenAIServer:
    """An OpenAI-compatible HTTP server on 127.0.0.1 (a free port unless ``port`` is given)."""

    def __init__(
        self, responder: Responder | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.responder: Responder = responder or echo_responder
        self.requests: list[RecordedRequest] = []
        self._queue: deque[AnyReply] = deque()
        self._lock = threading.Lock()
        httpd = _QuietServer((host, port), _Handler, bind_and_activate=False)
        httpd.openai = self
        listener = listen(host, port, what="OpenAIServer", backlog=128)
        self._server = StdlibServer(httpd, listener, "finetuner-openai-server")
        self._clients: list[openai.OpenAI] = []
        # The fine-tuning APIs: OpenAI's (files, fine_tuning/jobs) and Together's (files/upload,
        # fine-tunes); script their jobs and failures through these.
        self.fine_tuning = FineTuningAPI("openai")
        self.together = FineTuningAPI("together")
        self.fireworks = FireworksAPI()  # issue 20: Fireworks' datasets and jobs
        self.stored_completions = StoredCompletionsAPI()  # GET /v1/chat/completions[/{id}...]

    @property
    def url(self) -> str:
        """The base URL to give the SDK, ending in ``/v1``."""
        return f"http://{url_host(self._server.host)}:{self._server.port}/v1"

    def start(self) -> OpenAIServer:
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving, and close the sync clients that ``client()`` made."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        self._server.stop()

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def enqueue(self, *replies: AnyReply) -> None:
        """Answer the next requests with these replies, in order, before the responder."""
        with self._lock:
            self._queue.extend(replies)

    def client(self, **kwargs: Any) -> openai.OpenAI:
        import openai

        kwargs.setdefault("api_key", "sk-test-not-a-real-key")
        client = openai.OpenAI(base_url=self.url, **kwargs)
        self._clients.append(client)
        return client

    def async_client(self, **kwargs: Any) -> openai.AsyncOpenAI:
        """An AsyncOpenAI client for this server; close it yourself (``async with``)."""
        import openai

        kwargs.setdefault("api_key", "sk-test-not-a-real-key")
        return openai.AsyncOpenAI(base_url=self.url, **kwargs)

    def _next_reply(self, request: RecordedRequest) -> AnyReply:
        with self._lock:
            self.requests.append(request)
            if self._queue:
                return self._queue.popleft()
        return self.responder(request)


class _Handler(BaseHTTPRequestHandler):
    """One connection of the server: the OpenAI (and Azure) routes and the fine-tuning APIs."""

    protocol_version = "HTTP/1.1"
    # issue 22: TCP_NODELAY, so a body written after its headers is not held ~40 ms by Nagle's
    # algorithm waiting on the client's delayed ACK (every non-streamed answer was).
    disable_nagle_algorithm = True
    server: _QuietServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _fine_tuning(self, method: str, body: bytes) -> bool:
        openai_server = self.server.openai
        apis = (openai_server.fine_tuning, openai_server.together, openai_server.fireworks)
        for api in apis:  # issue 20: and Fireworks'
            if api.routes(self.path):
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, obj, extra = api.handle(method, self.path, headers, body)
                self._send_json(status, obj, dict(extra))
                return True
        return False

    def _unknown_path(self) -> None:
        self._send_json(404, _error_body(f"Unknown path {self.path}", "invalid_request_error"))

    def do_GET(self) -> None:
        stored = self.server.openai.stored_completions  # issue 22: stored chat completions
        if stored.routes(self.path):
            self._send_json(*stored.handle(self.path))
            return
        if not self._fine_tuning("GET", b""):
            self._unknown_path()

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        if self._fine_tuning("POST", body):
            return
        request = RecordedRequest(
            "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body
        )
        api = _api_for(self.path)
        if api is None:
            self._unknown_path()
            return
        try:
            payload = request.json
        except ValueError:
            message = "We could not parse the JSON body of your request."
            self._send_json(400, _error_body(message, "invalid_request_error"))
            return
        self._answer(api, payload, self.server.openai._next_reply(request))

    def _answer(self, api: str, payload: Any, reply: AnyReply) -> None:
        if isinstance(reply, RawReply):
            self._send(reply.status, reply.body, dict(reply.headers))
        elif isinstance(reply, ErrorReply):
            body_json = _error_body(reply.message, reply.type, reply.code)
            self._send_json(reply.status, body_json, dict(reply.headers))
        elif api == "responses":
            if payload.get("stream"):
                self._send_events(_response_events(payload, reply), reply, named=True)
            else:
                self._send_json(200, _response(payload, reply))
        elif payload.get("stream"):
            self._send_events(_chunks(payload, reply), reply, named=False)
        else:
            self._send_json(200, _completion(payload, reply))

    def _send(self, status: int, body: str | bytes, headers: dict[str, str]) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        headers.setdefault("content-type", "application/json")
        for key, value in headers.items():
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        headers = headers or {}
        headers.setdefault("x-request-id", f"req_{next(_ids):016x}")
        self._send(status, json.dumps(obj), headers)

    def _send_events(self, events: Iterator[str], reply: Reply, named: bool) -> None:
        """SSE: ``data:`` lines (chat), or ``event:`` + ``data:`` pairs (Responses)."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("x-request-id", f"req_{next(_ids):016x}")
        self.end_headers()
        for count, event in enumerate(events):
            if reply.stream_cut_after is not None and count >= reply.stream_cut_after:
                self.close_connection = True
                self.wfile.flush()
                return  # no terminating chunk: the client sees the connection break
            if named:
                kind = json.loads(event)["type"]
                data = f"event: {kind}\ndata: {event}\n\n".encode()
            else:
                data = f"data: {event}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")


def _api_for(path: str) -> str | None:
    """Which API a request path is for: OpenAI's, or Azure OpenAI's deployment paths."""
    route = path.split("?", 1)[0].rstrip("/")
    if route in ("/v1/chat/completions", "/chat/completions") or (
        route.startswith("/openai/deployments/") and route.endswith("/chat/completions")
    ):
        return "chat"
    if route in ("/v1/responses", "/responses", "/openai/v1/responses"):
        return "responses"
    return None


def _error_body(message: str, type_: str | None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _contents(payload: Mapping[str, Any], reply: Reply) -> list[str | None]:
    n = payload.get("n") or 1
    if isinstance(reply.content, list):
        return [reply.content[i % len(reply.content)] for i in range(n)]
    return [reply.content] * n


def _tool_calls(reply: Reply) -> list[dict[str, Any]]:
    return [
        {
            "id": call.id or f"call_{next(_ids):024x}",
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        for call in reply.tool_calls
    ]


def _usage(payload: Mapping[str, Any], reply: Reply, contents: list[str | None]) -> dict[str, Any]:
    prompt = reply.prompt_tokens
    if prompt is None:
        prompt = _words(payload.get("messages") or [])
    completion = reply.completion_tokens
    if completion is None:
        completion = sum(_words(c or "") for c in contents) + sum(
            _words(c.arguments) for c in reply.tool_calls
        )
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _finish(reply: Reply) -> str:
    return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")


def _completion(payload: Mapping[str, Any], reply: Reply) -> dict[str, Any]:
    contents = _contents(payload, reply)
    tool_calls = _tool_calls(reply)
    choices = []
    for index, content in enumerate(contents):
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        choices.append(
            {"index": index, "message": message, "logprobs": None, "finish_reason": _finish(reply)}
        )
    return {
        "id": f"chatcmpl-{next(_ids):024x}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.model or payload.get("model"),
        "choices": choices,
        "usage": _usage(payload, reply, contents),
        "system_fingerprint": "fp_finetuner_test",
    }


def _chunks(payload: Mapping[str, Any], reply: Reply) -> Iterator[str]:
    """The SSE data lines of a streamed completion, as the real API orders them."""
    contents = _contents(payload, reply)
    tool_calls = _tool_calls(reply)
    base = {
        "id": f"chatcmpl-{next(_ids):024x}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": reply.model or payload.get("model"),
        "system_fingerprint": "fp_finetuner_test",
    }
    include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> str:
        body = {
            **base,
            "choices": [
                {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            ],
        }
        if include_usage:
            body["usage"] = None
        return json.dumps(body)

    for index, content in enumerate(contents):
        first: dict[str, Any] = {
            "role": "assistant",
            "content": "" if content is not None else None,
            "refusal": None,
        }
        yield chunk(index, first)
        text = content or ""
        for start in range(0, len(text), max(1, reply.chunk_size)):
            yield chunk(index, {"content": text[start : start + reply.chunk_size]})
        for position, call in enumerate(tool_calls):
            head = {
                "index": position,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            yield chunk(index, {"tool_calls": [head]})
            arguments = call["function"]["arguments"]
            for start in range(0, len(arguments), max(1, reply.chunk_size)):
                piece = {
                    "index": position,
                    "function": {"arguments": arguments[start : start + reply.chunk_size]},
                }
                yield chunk(index, {"tool_calls": [piece]})
        yield chunk(index, {}, _finish(reply))
    if include_usage:
        yield json.dumps({**base, "choices": [], "usage": _usage(payload, reply, contents)})
    yield "[DONE]"


# --- the Responses API -------------------------------------------------------------------


def _response_status(reply: Reply) -> tuple[str, dict[str, str] | None]:
    reason = reply.finish_reason
    if reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _response_items(reply: Reply) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if reply.reasoning is not None:
        items.append(
            {
                "id": f"rs_{next(_ids):024x}",
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": reply.reasoning}],
            }
        )
    content = reply.content[0] if isinstance(reply.content, list) else reply.content
    if content is not None:
        items.append(
            {
                "id": f"msg_{next(_ids):024x}",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "annotations": [], "logprobs": [], "text": content}
                ],
            }
        )
    for call in reply.tool_calls:
        items.append(
            {
                "id": f"fc_{next(_ids):024x}",
                "type": "function_call",
                "status": "completed",
                "arguments": call.arguments,
                "call_id": call.id or f"call_{next(_ids):024x}",
                "name": call.name,
            }
        )
    return items


def _response(
    payload: Mapping[str, Any],
    reply: Reply,
    items: list[dict[str, Any]] | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    """A ``Response`` object as the real API returns it."""
    final_status, details = _response_status(reply)
    items = _response_items(reply) if items is None else items
    content = reply.content[0] if isinstance(reply.content, list) else reply.content
    output_tokens = reply.completion_tokens
    if output_tokens is None:
        output_tokens = _words(content or "") + sum(_words(c.arguments) for c in reply.tool_calls)
    input_tokens = reply.prompt_tokens
    if input_tokens is None:
        input_tokens = _words(payload.get("input") or "") + _words(payload.get("instructions"))
    status = status or final_status
    done = status != "in_progress"
    return {
        "id": f"resp_{next(_ids):024x}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "background": False,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": None,
        "incomplete_details": details if done else None,
        "instructions": payload.get("instructions"),
        "max_output_tokens": payload.get("max_output_tokens"),
        "model": reply.model or payload.get("model"),
        "output": items,
        "parallel_tool_calls": payload.get("parallel_tool_calls", True),
        "previous_response_id": payload.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": payload.get("store", True),
        "temperature": payload.get("temperature", 1.0),
        "text": payload.get("text") or {"format": {"type": "text"}},
        "tool_choice": payload.get("tool_choice", "auto"),
        "tools": payload.get("tools") or [],
        "top_p": payload.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        }
        if done
        else None,
        "user": None,
        "metadata": payload.get("metadata") or {},
    }


def _response_events(payload: Mapping[str, Any], reply: Reply) -> Iterator[str]:
    """The SSE events of a streamed Response, in the order and shape the real API sends."""
    sequence = itertools.count()
    items = _response_items(reply)
    started = _response(payload, reply, items=[], status="in_progress")
    response_id = started["id"]

    def event(kind: str, **fields: Any) -> str:
        return json.dumps({"type": kind, **fields, "sequence_number": next(sequence)})

    yield event("response.created", response=started)
    yield event("response.in_progress", response=started)
    for index, item in enumerate(items):
        if item["type"] == "message":
            yield from _message_events(event, index, item, reply.chunk_size)
        elif item["type"] == "function_call":
            yield from _function_call_events(event, index, item, reply.chunk_size)
        else:
            yield event("response.output_item.added", output_index=index, item=item)
        yield event("response.output_item.done", output_index=index, item=item)
    final = _response(payload, reply, items=items)
    final["id"] = response_id
    kind = "response.completed" if final["status"] == "completed" else "response.incomplete"
    yield event(kind, response=final)


_Event = Callable[..., str]


def _pieces(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), max(1, size)):
        yield text[start : start + size]


def _message_events(
    event: _Event, index: int, item: dict[str, Any], chunk_size: int
) -> Iterator[str]:
    """An output message: added, its text part opened, its deltas, then text and part done."""
    text = item["content"][0]["text"]
    yield event(
        "response.output_item.added",
        output_index=index,
        item={**item, "status": "in_progress", "content": []},
    )
    empty = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
    part = {"item_id": item["id"], "output_index": index, "content_index": 0}
    yield event("response.content_part.added", **part, part=empty)
    for piece in _pieces(text, chunk_size):
        yield event("response.output_text.delta", **part, delta=piece, logprobs=[])
    yield event("response.output_text.done", **part, text=text, logprobs=[])
    yield event("response.content_part.done", **part, part=item["content"][0])


def _function_call_events(
    event: _Event, index: int, item: dict[str, Any], chunk_size: int
) -> Iterator[str]:
    """A function call: added with no arguments, the arguments' deltas, then done."""
    yield event(
        "response.output_item.added",
        output_index=index,
        item={**item, "status": "in_progress", "arguments": ""},
    )
    arguments = item["arguments"]
    where = {"item_id": item["id"], "output_index": index}
    for piece in _pieces(arguments, chunk_size):
        yield event("response.function_call_arguments.delta", **where, delta=piece)
    yield event("response.function_call_arguments.done", **where, arguments=arguments)
