"""Images, audio and files: stored as semconv uri/blob/file parts, exported back to exactly what
the app sent; content over the size cap is left out with a marker, never cut."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

import finetuner_otel
from finetuner_otel.testing import OpenAIServer, Reply

from .conftest import rows

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4).decode()
WAV = base64.b64encode(b"RIFF" + bytes(200)).decode()
PDF = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.4 tiny").decode()


def test_chat_content_parts_round_trip(capture, server: OpenAIServer) -> None:
    content = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "input_audio", "input_audio": {"data": WAV, "format": "wav"}},
        {"type": "file", "file": {"file_id": "file-abc123"}},
        {"type": "file", "file": {"filename": "tiny.pdf", "file_data": PDF}},
    ]
    messages = [{"role": "user", "content": content}]
    server.enqueue(Reply("a cat, a square, a sound and two files"))
    server.client().chat.completions.create(model="gpt-4o", messages=messages)
    [row] = rows(capture)
    assert row["messages"] == messages and row["trainable"]
    kinds = [(p["type"], p.get("modality")) for p in row["input_messages"][0]["parts"]]
    assert kinds == [
        ("text", None),
        ("uri", "image"),
        ("blob", "image"),
        ("blob", "audio"),
        ("file", "file"),
        ("file", "file"),
    ]


def test_responses_content_parts_export_in_chat_format(capture, server: OpenAIServer) -> None:
    server.enqueue(Reply("two pictures"))
    server.client().responses.create(
        model="gpt-4o",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Compare"},
                    {
                        "type": "input_image",
                        "image_url": "https://example.com/a.png",
                        "detail": "high",
                    },
                    {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
                    {"type": "input_file", "file_id": "file-xyz"},
                ],
            }
        ],
    )
    [row] = rows(capture)
    assert row["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.com/a.png", "detail": "high"},
                },
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "file", "file": {"file_id": "file-xyz"}},
            ],
        }
    ]


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_content_over_the_cap_is_left_out_and_flagged(
    db: Path, server: OpenAIServer, monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    monkeypatch.setenv("FINETUNER_MAX_CONTENT_SIZE", "1000")
    big = f"data:image/png;base64,{PNG}"
    assert len(big) > 1000
    handle = finetuner_otel.instrument(db)
    try:
        server.enqueue(Reply("an image"))
        client = server.client()
        if api == "chat":
            image = {"type": "image_url", "image_url": {"url": big}}
            content = [{"type": "text", "text": "What is it?"}, image]
            client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": content}]
            )
        else:
            image = {"type": "input_image", "image_url": big}
            content = [{"type": "input_text", "text": "What is it?"}, image]
            client.responses.create(model="m", input=[{"role": "user", "content": content}])
        [row] = rows(handle)
    finally:
        handle.shutdown()
    sent = server.requests[-1].body
    assert PNG.encode() in sent  # the app's request itself is whole
    assert not row["trainable"]
    assert "size cap" in row["untrainable_reason"]
    part = row["input_messages"][0]["parts"][1]
    assert part["content"] is None
    assert part["finetuner.omitted"] == {"field": "content", "size": len(PNG), "limit": 1000}
    assert PNG not in json.dumps(row["input_messages"])  # left out, not cut


def test_a_bad_size_cap_is_refused_clearly(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINETUNER_MAX_CONTENT_SIZE", "lots")
    with pytest.raises(finetuner_otel.ConfigurationError, match="FINETUNER_MAX_CONTENT_SIZE"):
        finetuner_otel.instrument(db)
