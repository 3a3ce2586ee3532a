"""Serve a locally trained adapter on an OpenAI-compatible chat-completions endpoint.

::

    server = job.serve()                      # or finetune.serve("finetuner-models/jobs/<id>")
    client = openai.OpenAI(base_url=server.url, api_key="local")
    client.chat.completions.create(model=server.model, messages=[...])       # the tuned model
    client.chat.completions.create(model=server.base_model, messages=[...])  # the base model
    Eval(client).run(server.model, val)       # scored like any other model
    server.stop()

The tuned model is named after the job (its id), the base model after its path, so the calls
``Eval`` makes are captured with that name, ``finetuner.purpose=eval``, like any other call.

Two backends: vLLM with LoRA (``vllm serve BASE --enable-lora --lora-modules JOB=ADAPTER``, a
process of its own) when vLLM is installed and a GPU is present; otherwise transformers + PEFT in
this process (Starlette + uvicorn, ``pip install 'finetuner-otel[local,serve]'``), one
generation at a time. Both speak the chat-completions wire format: a JSON body, or with
``stream=True`` ``text/event-stream`` chunks ending in ``data: [DONE]`` (``stream_options=
{"include_usage": true}`` adds the usage chunk). The transformers server answers text (no tool
calls are parsed from the output) and counts what it generated (``server.stats``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import ConfigurationError
from .._http import UvicornServer, listen, url_host
from ._types import JobState

if TYPE_CHECKING:
    import openai
    from starlette.responses import Response


class _HasState(Protocol):
    """A ``Job`` (not imported: ``Job.serve`` imports this module)."""

    @property
    def state(self) -> JobState: ...


BACKENDS = ("auto", "transformers", "vllm")


@dataclass
class ServeStats:
    """What the transformers backend generated: requests, completion tokens, seconds."""

    requests: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float | None:
        return self.completion_tokens / self.seconds if self.seconds else None


def _adapter(job_or_path: _HasState | str | os.PathLike[str]) -> tuple[Path, str]:
    """The adapter's folder and the name to serve it under (the job id, else the folder's)."""
    state = getattr(job_or_path, "state", None)
    if isinstance(state, JobState):
        if state.provider != "local" or state.status != "succeeded":
            raise ConfigurationError(
                f"only a succeeded local job can be served here; {state.id} is a "
                f"{state.status} {state.provider} job (its provider serves its model: call "
                f"{state.fine_tuned_model or 'it'} there)"
            )
        return Path(str(state.fine_tuned_model)), state.id
    path = Path(job_or_path)  # type: ignore[arg-type]
    if (path / "job.json").is_file():  # a job's folder
        return path / "adapter", path.name
    return path, path.parent.name if path.name == "adapter" else path.name


def _base_of(adapter: Path) -> str:
    config = adapter / "adapter_config.json"
    if not config.is_file():
        raise ConfigurationError(
            f"{adapter} holds no LoRA adapter (adapter_config.json); give a succeeded local "
            f"job, its folder, or its adapter folder"
        )
    base = json.loads(config.read_text()).get("base_model_name_or_path")
    if not base:
        raise ConfigurationError(f"{config} does not name its base model")
    return str(base)


def _gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def serve(
    job_or_path: _HasState | str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    backend: str = "auto",
    max_new_tokens: int = 256,
) -> AdapterServer | VLLMServer:
    """Start serving a local job's adapter (a ``Job``, its folder or its adapter folder) and
    its base model; returns the running server (``.url``, ``.model``, ``.base_model``,
    ``.stop()``; a context manager). ``backend``: auto (vLLM where it runs), transformers or
    vllm."""
    if backend not in BACKENDS:
        raise ConfigurationError(f"backend is one of {', '.join(BACKENDS)}, got {backend!r}")
    adapter, name = _adapter(job_or_path)
    base = _base_of(adapter)
    vllm_ok = importlib.util.find_spec("vllm") is not None and _gpu()
    if backend == "vllm" and not vllm_ok:
        raise ConfigurationError("the vllm backend needs vLLM installed and a GPU")
    if backend == "vllm" or (backend == "auto" and vllm_ok):
        return VLLMServer(adapter, base, name, host=host, port=port).start()
    model = ChatModel(adapter, base, name, max_new_tokens=max_new_tokens)
    return AdapterServer(model, host=host, port=port).start()


# --- the transformers backend -----------------------------------------------------------------


class ChatModel:
    """The base model with the adapter on it (PEFT), answering chat messages."""

    def __init__(self, adapter: Path, base: str, name: str, *, max_new_tokens: int) -> None:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name, self.base_name, self.max_new_tokens = name, base, max_new_tokens
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(adapter)
        base_model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
        with warnings.catch_warnings():  # PEFT 0.21 reads transformers' deprecated name
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
            peft_model = PeftModel.from_pretrained(base_model, adapter)
        self.model = peft_model.to(self.device).eval()
        self.lock = threading.Lock()  # one generation at a time
        self.stats = ServeStats()

    def prompt(self, request: Mapping[str, Any]) -> Any:
        """The request's messages (and tools) through the chat template, as input ids."""
        from .._hf import hf_message

        try:
            messages = [hf_message(m) for m in request["messages"]]
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        ids = self.tokenizer.apply_chat_template(
            messages,
            tools=request.get("tools") or None,
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        return ids.to(self.device)

    def _generation(self, request: Mapping[str, Any]) -> dict[str, Any]:
        limit = request.get("max_completion_tokens") or request.get("max_tokens")
        options: dict[str, Any] = {"max_new_tokens": int(limit or self.max_new_tokens)}
        temperature = request.get("temperature")
        if temperature:  # 0 or absent: greedy, so evals repeat
            options.update(do_sample=True, temperature=float(temperature))
            if request.get("top_p") is not None:
                options["top_p"] = float(request["top_p"])
        else:
            options["do_sample"] = False
        options["pad_token_id"] = self.tokenizer.pad_token_id or self.tokenizer.eos_token_id
        return options

    def generate(self, request: Mapping[str, Any], streamer: Any = None) -> tuple[str, int, int]:
        """The answer's text, prompt tokens and completion tokens."""
        import torch

        inputs = self.prompt(request)
        prompt_tokens = int(inputs["input_ids"].shape[-1])
        seed = request.get("seed")
        with self.lock, torch.no_grad():
            if seed is not None:
                torch.manual_seed(int(seed))
            started = time.perf_counter()
            output = self._run(request, inputs, streamer)
            elapsed = time.perf_counter() - started
        new = output[0][prompt_tokens:]
        self.stats.requests += 1
        self.stats.completion_tokens += int(new.shape[-1])
        self.stats.seconds += elapsed
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return text, prompt_tokens, int(new.shape[-1])

    def _run(self, request: Mapping[str, Any], inputs: Any, streamer: Any) -> Any:
        options = {**inputs, **self._generation(request), "streamer": streamer}
        if request.get("model") == self.base_name:
            with self.model.disable_adapter():
                return self.model.generate(**options)
        return self.model.generate(**options)


def _error(status: int, message: str, kind: str = "invalid_request_error") -> Response:
    from starlette.responses import JSONResponse

    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return JSONResponse(body, status_code=status)


def _checked(model: ChatModel, body: Any) -> str | None:
    """Why a request cannot be answered, or None."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return "the body must be a JSON object with a messages list"
    if body.get("model") not in (model.name, model.base_name):
        return (
            f"The model {body.get('model')!r} does not exist here; this server has "
            f"{model.name!r} (the fine-tuned adapter) and {model.base_name!r} (its base)"
        )
    if (body.get("n") or 1) != 1:
        return "this server answers n=1 only"
    return None


def _completion(model_name: str, text: str, prompt: int, completion: int) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def _stream(model: ChatModel, body: dict[str, Any]) -> Iterator[str]:
    """The SSE lines of a streamed answer: a role chunk, text deltas as they are generated,
    a finish chunk, the usage chunk when asked for, ``[DONE]``."""
    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(model.tokenizer, skip_prompt=True, skip_special_tokens=True)
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["answer"] = model.generate(body, streamer)
        except BaseException as exc:  # reported in the stream's last chunk
            result["error"] = exc
            streamer.end()

    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body["model"],
    }
    usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        line = {**base, "choices": [choice], **({"usage": None} if usage else {})}
        return f"data: {json.dumps(line)}\n\n"

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    yield chunk({"role": "assistant", "content": ""})
    for piece in streamer:
        if piece:
            yield chunk({"content": piece})
    thread.join()
    if "error" in result:
        message = f"{type(result['error']).__name__}: {result['error']}"
        yield f"data: {json.dumps({'error': {'message': message, 'type': 'server_error'}})}\n\n"
        return
    yield chunk({}, "stop")
    if usage:
        _, prompt, completion = result["answer"]
        totals = {"prompt_tokens": prompt, "completion_tokens": completion}
        totals["total_tokens"] = prompt + completion
        yield f"data: {json.dumps({**base, 'choices': [], 'usage': totals})}\n\n"
    yield "data: [DONE]\n\n"


def chat_app(model: ChatModel) -> Any:
    """The Starlette app: POST /v1/chat/completions, GET /v1/models."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    async def completions(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.")
        problem = _checked(model, body)
        if problem is not None:
            return _error(404 if "does not exist" in problem else 400, problem)
        if body.get("stream"):
            return StreamingResponse(_stream(model, body), media_type="text/event-stream")
        try:
            text, prompt, completion = await run_in_threadpool(model.generate, body)
        except ConfigurationError as exc:
            return _error(400, str(exc))
        return JSONResponse(_completion(body["model"], text, prompt, completion))

    async def models(request: Request) -> Response:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "finetuner-otel"}
            for name in (model.name, model.base_name)
        ]
        return JSONResponse({"object": "list", "data": data})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )


class _Served:
    """What both backends' servers share: the URL, the model names, a client, with-blocks."""

    host: str
    port: int
    model: str
    base_model: str

    @property
    def url(self) -> str:
        """The base URL to give the SDK, ending in ``/v1``."""
        return f"http://{url_host(self.host)}:{self.port}/v1"

    def client(self, **kwargs: Any) -> openai.OpenAI:
        import openai

        kwargs.setdefault("api_key", "local")
        return openai.OpenAI(base_url=self.url, **kwargs)

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class AdapterServer(_Served):
    """The transformers backend on a background uvicorn server."""

    def __init__(self, chat: ChatModel, *, host: str, port: int) -> None:
        self.chat = chat
        self.model, self.base_model = chat.name, chat.base_name
        listener = listen(host, port, what="the adapter server")
        self.host, self.port = host, listener.getsockname()[1]
        self._server = UvicornServer(chat_app(chat), listener, "finetuner-adapter-server")

    def __repr__(self) -> str:
        return f"AdapterServer({self.model!r}, url={self.url!r})"

    @property
    def stats(self) -> ServeStats:
        return self.chat.stats

    def start(self) -> AdapterServer:
        self._server.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.stop()


# --- the vLLM backend -------------------------------------------------------------------------


class VLLMServer(_Served):
    """``vllm serve`` with the adapter as a LoRA module, in a process of its own."""

    def __init__(self, adapter: Path, base: str, name: str, *, host: str, port: int) -> None:
        listener = listen(host, port, what="the vLLM server")  # a free port, known now
        self.host, self.port = host, listener.getsockname()[1]
        listener.close()
        self.model, self.base_model, self.adapter = name, base, adapter
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 600.0) -> VLLMServer:
        command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model"]
        command += [self.base_model, "--enable-lora", "--lora-modules"]
        command += [f"{self.model}={self.adapter}", "--host", self.host, "--port", str(self.port)]
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ConfigurationError(f"vLLM exited with {self._process.returncode}")
            try:
                self.client(max_retries=0, timeout=2).models.list()
                return self
            except Exception:  # not up yet
                time.sleep(1.0)
        self.stop()
        raise ConfigurationError(f"vLLM did not start within {timeout:g}s")

    def serve_forever(self) -> None:
        if self._process is not None:
            self._process.wait()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
