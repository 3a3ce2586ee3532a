"""Redaction runs before anything is written: no byte of the span, spool or store keeps it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import finetuner_otel
from finetuner_otel._redact import Redactor
from finetuner_otel.testing import OpenAIServer, Reply, ToolCall

from .conftest import rows

EMAIL = "jane.doe@example.com"
PHONE = "+1 (415) 555-0132"
KEY = "sk-proj-Abc123def456GHI789jkl012"
SECRETS = (EMAIL, "555-0132", KEY)


def _every_byte(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


def test_builtin_redaction_reaches_no_span_spool_or_store(
    db: Path, server: OpenAIServer, tmp_path: Path
) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))  # the app's own exporter
    handle = finetuner_otel.instrument(
        db, tracer_provider=provider, redact=["email", "phone", "api_key"]
    )
    try:
        client = server.client()
        server.enqueue(
            Reply(
                f"Write to {EMAIL} or call {PHONE}.",
                tool_calls=[ToolCall("lookup", json.dumps({"email": EMAIL}))],
            )
        )
        client.chat.completions.create(
            model="m",
            messages=[
                {"role": "system", "content": f"Our key is {KEY}."},
                {"role": "user", "content": f"I am {EMAIL}, phone {PHONE}"},
                {"role": "tool", "tool_call_id": "c1", "content": f"found {EMAIL}"},
            ],
            prediction={"type": "content", "content": f"Write to {EMAIL}"},
            dataset_name="pii",
        )
        stream = client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": f"mail {EMAIL}"}],
            stream=True,
            dataset_name="pii",
        )
        for _ in stream:
            pass
        [first, second] = rows(handle)
        assert "[REDACTED:email]" in first["messages"][1]["content"]
        assert "[REDACTED:phone]" in first["messages"][1]["content"]
        assert first["messages"][0]["content"] == "Our key is [REDACTED:api_key]."
        assert "[REDACTED:email]" in first["completion"]["content"]
        assert json.loads(first["completion"]["tool_calls"][0]["function"]["arguments"]) == {
            "email": "[REDACTED:email]"
        }
        assert first["request_options"]["prediction"]["content"] == "Write to [REDACTED:email]"
        assert "[REDACTED:email]" in second["messages"][0]["content"]
    finally:
        handle.shutdown()
    written = _every_byte(db.parent)
    spans = json.dumps([dict(s.attributes or {}) for s in memory.get_finished_spans()])
    for secret in SECRETS:
        assert secret.encode() not in written, secret
        assert secret not in spans, secret


def test_a_redact_function_and_patterns(db: Path, server: OpenAIServer) -> None:
    handle = finetuner_otel.instrument(db, redact=lambda text: re.sub(r"\d", "#", text))
    try:
        server.enqueue(Reply("order 42"))
        server.client().chat.completions.create(
            model="m", messages=[{"role": "user", "content": "where is order 1234?"}]
        )
        [row] = rows(handle)
        assert row["messages"][0]["content"] == "where is order ####?"
        assert row["completion"]["content"] == "order ##"
    finally:
        handle.shutdown()


def test_a_failing_redact_function_records_nothing_and_breaks_nothing(
    db: Path, server: OpenAIServer
) -> None:
    def broken(text: str) -> str:
        raise RuntimeError("redactor bug")

    handle = finetuner_otel.instrument(db, redact=broken)
    try:
        server.enqueue(Reply("fine"))
        reply = server.client().chat.completions.create(
            model="m", messages=[{"role": "user", "content": "secret"}]
        )
        assert reply.choices[0].message.content == "fine"  # the app's call is untouched
        assert handle.flush()
        assert not db.exists() or b"secret" not in db.read_bytes()
    finally:
        handle.shutdown()


def test_images_are_left_alone_and_bad_specs_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    redactor = Redactor(["phone"])
    blob = {"type": "blob", "modality": "image", "content": "12345678901234567890"}
    assert redactor.part(blob) == blob
    assert redactor.text("call 0044 20 7946 0958 now") == "call [REDACTED:phone] now"
    assert redactor.text("order 1234 of 2024") == "order 1234 of 2024"
    with pytest.raises(finetuner_otel.ConfigurationError, match="neither a built-in"):
        Redactor(["(unclosed"])
    from finetuner_otel._redact import from_environment

    with pytest.raises(finetuner_otel.ConfigurationError, match="FINETUNER_REDACT names"):
        from_environment("email,ssn")
    assert from_environment(" email , phone ") is not None
