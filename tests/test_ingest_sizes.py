"""Ingest takes what capture and import write, whatever its size: memory bounds on the ingest
connection must never leave a large but valid spool file waiting for ever."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from finetuner_otel import Store


def test_thousands_of_examples_in_one_spool_file(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    records = [
        {
            "messages": [
                {"role": "user", "content": f"question {i} " + "x" * 1200},
                {"role": "assistant", "content": f"answer {i}"},
            ]
        }
        for i in range(3000)
    ]
    added = store.add_examples(records, dataset="big")  # one spool file of about 4 MB
    assert len(added) == 3000
    assert store.pending() == 0


def test_one_call_with_an_image_near_the_content_cap(tmp_path: Path) -> None:
    """An image of 9 MB (12 MB of base64, under the 20M-character default cap) is one line of
    one spool file: it must go in."""
    store = Store(tmp_path / "s.duckdb")
    image = "data:image/png;base64," + base64.b64encode(os.urandom(9_000_000)).decode()
    content = [
        {"type": "text", "text": "what is it?"},
        {"type": "image_url", "image_url": {"url": image}},
    ]
    record = {
        "messages": [
            {"role": "user", "content": content},
            {"role": "assistant", "content": "a picture"},
        ]
    }
    [example] = store.add_examples([record], dataset="images")
    assert example.messages[0]["content"][1]["image_url"]["url"] == image
    assert store.pending() == 0
