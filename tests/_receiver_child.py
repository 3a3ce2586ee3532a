"""``finetuner serve``'s receiver in a process of its own, for the tests that measure it.

``python tests/_receiver_child.py DB TOKEN MAX_BODY [READ_TIMEOUT]`` prints ``{"url": ...}``,
then answers each line on stdin with its numbers (peak and current RSS from /proc, threads,
spans accepted, requests refused); ``flush`` first ingests the spool into the store. EOF stops it.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def main(argv: list[str]) -> None:
    from finetuner_otel._serve import OTLPReceiver

    db, token, max_body = argv[0], argv[1] or None, int(argv[2])
    options: dict[str, Any] = {"read_timeout": float(argv[3])} if len(argv) > 3 else {}
    with OTLPReceiver(db, port=0, token=token, max_body=max_body, **options) as receiver:
        print(json.dumps({"url": receiver.url}), flush=True)
        for line in sys.stdin:
            if line.strip() == "flush":
                receiver.exporter.force_flush()
            stats = {
                "peak_rss_kb": _status_kb("VmHWM"),
                "rss_kb": _status_kb("VmRSS"),
                "threads": threading.active_count(),
                "accepted": receiver.accepted,
                "refused": receiver.refused,
            }
            print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
