"""A separate application process for the multi-process tests: ``python -m tests._worker MODE``."""

from __future__ import annotations

import sys
import time

import finetuner_otel
from finetuner_otel.testing import OpenAIServer


def write(calls: int, tag: str) -> None:
    finetuner_otel.instrument()
    with OpenAIServer() as server:
        client = server.client()
        for i in range(calls):
            client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": f"{tag} {i}"}], dataset_name=tag
            )
    # exit normally: instrument() flushes and ingests at exit


def flush_then_wait(calls: int) -> None:
    handle = finetuner_otel.instrument()
    with OpenAIServer() as server:
        client = server.client()
        for i in range(calls):
            client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": f"k {i}"}], dataset_name="killed"
            )
    handle.flush(timeout=0.5)  # the parent holds the store, so this leaves the spool in place
    print("flushed", flush=True)
    time.sleep(60)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "write":
        write(int(sys.argv[2]), sys.argv[3])
    elif mode == "flush_then_wait":
        flush_then_wait(int(sys.argv[2]))
    else:
        raise SystemExit(f"unknown mode {mode}")
