"""The attacks on ``finetuner serve`` of issue 18, measured: one table row per attack.

    python tests/benchmarks/serve_attacks.py                 # this checkout's receiver
    python tests/benchmarks/serve_attacks.py --tree /tmp/old  # another tree's (git archive)

Each attack runs against a fresh receiver in a process of its own (16 MB bodies, a token, a
2 GiB address-space cap so that a runaway one fails instead of taking the machine), and reports
the requests sent, what was answered and how fast, spans accepted, rows stored, and the
receiver's peak RSS (VmHWM) growth. The tests in tests/test_serve_attacks.py hold the outcomes;
this only gives the numbers.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from tests._otlp_requests import (  # noqa: E402
    KeyValue,
    chat_attributes,
    connect,
    empty_messages_bomb,
    export_request,
    kvlist_bomb,
    post_head,
    read_reply,
    span,
    stats,
    text,
)

TOKEN = "bench-token"
AUTH = {"authorization": f"Bearer {TOKEN}", "content-type": "application/x-protobuf"}
MB = 1024 * 1024


CAP = 4 * 1024 * MB  # address space of a receiver under a bomb, so that it fails alone


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))


class Receiver:
    def __init__(self, tree: str | None, tmp: str, capped: bool) -> None:
        env = dict(os.environ)
        if tree:
            env["PYTHONPATH"] = tree
        self.db = os.path.join(tmp, "served.duckdb")
        self.process = subprocess.Popen(
            [sys.executable, str(HERE.parent / "_receiver_child.py"), self.db, TOKEN, str(16 * MB)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=tmp,
            env=env,
            preexec_fn=_cap_memory if capped else None,
        )
        self.url = json.loads(self.process.stdout.readline())["url"]  # type: ignore[union-attr]

    def stats(self, command: str = "stats") -> dict[str, Any]:
        try:
            return stats(self.process, command)
        except (BrokenPipeError, ValueError):
            return {"peak_rss_kb": -1, "accepted": "died", "threads": -1}

    def rows(self) -> int | str:
        import duckdb

        try:
            with duckdb.connect(self.db, read_only=True) as con:
                row = con.execute("SELECT count(*) FROM calls").fetchone()
                return int(row[0]) if row else 0
        except duckdb.Error:
            return 0

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[Any, float]:
    start = time.perf_counter()
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status: Any = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (TimeoutError, OSError) as exc:
        status = f"no answer ({type(exc).__name__})"
    return status, time.perf_counter() - start


def kvlist_bomb_attack(r: Receiver) -> dict[str, Any]:
    body = kvlist_bomb(30)
    status, took = _post(r.url, body, AUTH, timeout=120)
    return {"requests": 1, "bytes sent": len(body), "answer": status, "seconds": took}


def gzip_bomb_attack(r: Receiver) -> dict[str, Any]:
    body = gzip.compress(bytes(100 * MB), compresslevel=9)
    status, took = _post(r.url, body, {**AUTH, "content-encoding": "gzip"}, timeout=60)
    return {"requests": 1, "bytes sent": len(body), "answer": status, "seconds": took}


def empty_protobuf_attack(r: Receiver) -> dict[str, Any]:
    body = empty_messages_bomb("protobuf")
    status, took = _post(r.url, body, AUTH, timeout=120)
    return {"requests": 1, "bytes sent": len(body), "answer": status, "seconds": took}


def empty_json_attack(r: Receiver) -> dict[str, Any]:
    body = empty_messages_bomb("json")
    headers = {**AUTH, "content-type": "application/json"}
    status, took = _post(r.url, body, headers, timeout=120)
    return {"requests": 1, "bytes sent": len(body), "answer": status, "seconds": took}


def slowloris_attack(r: Receiver) -> dict[str, Any]:
    slow = []
    for i in range(400):
        sock = connect(r.url)
        head = post_head(r.url, {**AUTH, "content-length": "100000"})
        sock.sendall(head[:-30] if i % 2 else head + b"\0" * 10)
        slow.append(sock)
    time.sleep(1)
    threads = r.stats()["threads"]
    status, took = _post(r.url, export_request(span(1, chat_attributes("honest"))), AUTH, 30)
    time.sleep(15)  # past any read timeout of the receiver
    still_open = sum(_is_open(sock) for sock in slow)
    for sock in slow:
        sock.close()
    return {
        "requests": 401,
        "answer": f"honest client: {status}",
        "seconds": took,
        "receiver threads": threads,
        "slow connections open after 16 s": still_open,
    }


def _is_open(sock: socket.socket) -> bool:
    """Whether the server still holds the connection (it may have answered 408 first)."""
    sock.setblocking(False)
    while True:
        try:
            if not sock.recv(1 << 16):
                return False
        except BlockingIOError:
            return True
        except OSError:
            return False


def token_before_body_attack(r: Receiver) -> dict[str, Any]:
    sock = connect(r.url)
    head = {"authorization": "Bearer wrong", "content-type": "application/x-protobuf"}
    start = time.perf_counter()
    sock.sendall(post_head(r.url, {**head, "content-length": str(15 * MB)}))
    status, _, _ = read_reply(sock, timeout=10)
    sock.close()
    return {
        "requests": 1,
        "answer": status or "no answer in 10 s",
        "seconds": time.perf_counter() - start,
    }


def chunked_attack(r: Receiver) -> dict[str, Any]:
    sock = connect(r.url)
    start = time.perf_counter()
    sock.sendall(post_head(r.url, {**AUTH, "transfer-encoding": "chunked"}))
    sent = 0
    try:
        for _ in range(400):  # up to 20 MB, over the 16 MB limit, never finished
            sock.sendall(b"c350\r\n" + b"\0" * 50_000 + b"\r\n")
            sent += 50_000
    except OSError:
        pass
    status, _, _ = read_reply(sock, timeout=10)
    sock.close()
    return {
        "requests": 1,
        "bytes sent": sent,
        "answer": status or "no answer",
        "seconds": time.perf_counter() - start,
    }


def forged_row_attack(r: Receiver) -> dict[str, Any]:
    forged = json.dumps(
        {"id": "f" * 48, "trace_id": "f" * 32, "span_id": "f" * 16, "dataset": "forged"}
    )
    value = '[{"role":"user","parts":[{"type":"text","content":"hi"}]}]\n' + forged + "\n"
    attributes = [a for a in chat_attributes("forge") if a.key != "gen_ai.input.messages"]
    attributes.append(KeyValue(key="gen_ai.input.messages", value=text(value)))
    body = export_request(span(6, attributes), scope="finetuner_otel.instrumentation")
    status, took = _post(r.url, body, AUTH, timeout=30)
    return {"requests": 1, "spans sent": 1, "answer": status, "seconds": took}


def off_loopback(tree: str | None) -> str:
    code = (
        "from finetuner_otel._serve import OTLPReceiver\n"
        "try:\n    r = OTLPReceiver('x.duckdb', host='0.0.0.0', port=0)\n"
        "    print('started without a token')\n"
        "except Exception as e:\n    print('refused:', e)\n"
    )
    env = dict(os.environ, **({"PYTHONPATH": tree} if tree else {}))
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp, env=env, capture_output=True, text=True
        )
    return (out.stdout.strip() or out.stderr.strip().splitlines()[-1])[:160]


ATTACKS: dict[str, Callable[[Receiver], dict[str, Any]]] = {
    "nested kvlist bomb (30 levels)": kvlist_bomb_attack,
    "gzip bomb (100 MB of zeros)": gzip_bomb_attack,
    "empty-message bomb (protobuf, 16 MB)": empty_protobuf_attack,
    "empty-message bomb (OTLP/JSON, 16 MB)": empty_json_attack,
    "slowloris (400 connections)": slowloris_attack,
    "wrong token, 15 MB Content-Length, no body": token_before_body_attack,
    "chunked body past 16 MB": chunked_attack,
    "row forged through our scope": forged_row_attack,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", help="PYTHONPATH of another finetuner_otel tree")
    parser.add_argument("--only", help="run the attacks whose name contains this")
    args = parser.parse_args()
    results = {}
    for name, attack in ATTACKS.items():
        if args.only and args.only not in name:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            receiver = Receiver(args.tree, tmp, capped="bomb" in name)
            try:
                before = receiver.stats()
                result = attack(receiver)
                after = receiver.stats()  # before the flush: the attack's peak, not DuckDB's
                result["spans accepted"] = receiver.stats("flush")["accepted"]
                result["rows stored"] = receiver.rows()
                if after["peak_rss_kb"] >= 0:
                    growth = (after["peak_rss_kb"] - before["peak_rss_kb"]) / 1024
                    result["peak RSS growth MB"] = round(growth, 1)
                    result["peak RSS MB"] = round(after["peak_rss_kb"] / 1024, 1)
                else:
                    result["peak RSS MB"] = "receiver died (4 GiB address-space cap)"
            finally:
                receiver.close()
        results[name] = {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
        print(name, json.dumps(results[name]), flush=True)
    if not args.only:
        results["no token off the loopback"] = {"outcome": off_loopback(args.tree)}
        print("no token off the loopback", json.dumps(results["no token off the loopback"]))


if __name__ == "__main__":
    socket.setdefaulttimeout(60)
    main()
