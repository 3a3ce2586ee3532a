"""A fleet of `finetuner serve` receivers, each a whole process of the real CLI, and clients
that post OTLP/protobuf spans to them, and spool lines written by hand: for the Iceberg store's
tests and benchmark."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from _otlp_requests import chat_attributes, export_request, span

from finetuner_otel.store.spool import CallRecord, encode_row


def spool_line(n: int, *, dataset: str, start_ns: int, question: str, answer: str) -> str:
    """The spool line of call ``n`` (trace and span id n + 1) of ``dataset``: a trainable chat
    of 2 ms, as the exporter writes it."""
    return encode_row(
        CallRecord(
            trace_id=n + 1,
            span_id=n + 1,
            start_ns=start_ns,
            end_ns=start_ns + 2_000_000,
            dataset=dataset,
            operation="chat",
            request_model="gpt-4o-mini",
            finish_reasons=["stop"],
            input_messages=[{"role": "user", "parts": [{"type": "text", "content": question}]}],
            output_messages=[{"role": "assistant", "parts": [{"type": "text", "content": answer}]}],
        )
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_receiver(
    store: str, spool: Path, port: int, interval: float = 0.3
) -> subprocess.Popen[bytes]:
    """``finetuner --db STORE serve`` on ``port``, its spool in ``spool``, ingesting every
    ``interval`` seconds; returned once it answers."""
    env = {
        **os.environ,
        "FINETUNER_SPOOL_DIR": str(spool),
        "FINETUNER_INGEST_INTERVAL": str(interval),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "finetuner_otel.cli", "--db", store, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its ingest helper dies with it under killpg
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:  # serving (the port is bound before the server runs): an empty export answered
            post(port, export_request())
            return process
        except OSError:
            if process.poll() is not None:
                raise AssertionError(
                    process.stderr.read().decode() if process.stderr else ""
                ) from None
            time.sleep(0.1)
    raise AssertionError("the receiver did not start")


def post(port: int, body: bytes) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/traces",
        data=body,
        headers={"content-type": "application/x-protobuf"},
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        return int(reply.status)


def send(
    port: int, first_id: int, spans: int, progress: list[int], slot: int, per_request: int = 10
) -> None:
    """Post ``spans`` spans in requests of ``per_request``; ``progress[slot]``: the number the
    receiver accepted so far."""
    for start in range(first_id, first_id + spans, per_request):
        body = export_request(
            *[
                span(i, chat_attributes("fleet", answer=f"a{i}"))
                for i in range(start, start + per_request)
            ]
        )
        try:
            if post(port, body) == 200:
                progress[slot] += per_request
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return  # the receiver is gone: what it did not answer was not accepted


def stop(process: subprocess.Popen[bytes]) -> str:
    """Ctrl-C, as a person stops serve: it stops, flushes the spool into the store; its stderr."""
    process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:  # pragma: no cover
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, err.decode()
    return err.decode()
