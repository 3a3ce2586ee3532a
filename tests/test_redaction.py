"""Redaction runs before anything is written: no byte of the span, spool or store keeps it."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import finetuner_otel
from finetuner_otel._redact import Redactor
from finetuner_otel.testing import ErrorReply, OpenAIServer, Reply, ToolCall

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


def _every_api_call(server: OpenAIServer, secret: str) -> None:
    """The secret in every field of every API we record, streamed and not, and in an error."""
    client = server.client()
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": f"looks up with {secret}",
                "parameters": {
                    "type": "object",
                    "properties": {"key": {"type": "string", "enum": [secret]}},
                },
            },
        }
    ]
    prompt = finetuner_otel.Prompt("p", [{"role": "user", "content": "use {{key}}"}])
    history = [
        {"role": "system", "content": f"Our key is {secret}."},
        {"role": "user", "content": [{"type": "text", "text": f"part {secret}"}]},
        {
            "role": "assistant",
            "content": f"said {secret}",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": json.dumps({"k": secret})},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": f"found {secret}"},
    ]
    for stream in (False, True):
        server.enqueue(
            Reply(f"the key {secret}", tool_calls=[ToolCall("lookup", json.dumps({"k": secret}))])
        )
        reply = client.chat.completions.create(
            model="m",
            messages=history,
            tools=tools,
            stop=[f"stop {secret}"],
            prediction={"type": "content", "content": secret},
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "description": secret, "schema": {"type": "object"}},
            },
            stream=stream,
        )
        if stream:
            for _ in reply:  # type: ignore[union-attr]
                pass
        server.enqueue(Reply(f"the key {secret}"))
        client.chat.completions.create(model="m", messages=prompt.messages(key=secret))
        server.enqueue(
            Reply(f"the key {secret}", tool_calls=[ToolCall("lookup", json.dumps({"k": secret}))])
        )
        response = client.responses.create(
            model="m",
            instructions=f"key {secret}",
            input=[
                {"role": "user", "content": [{"type": "input_text", "text": secret}]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": secret},
                {"type": "function_call_output", "call_id": "c1", "output": secret},
            ],
            tools=[{"type": "function", "name": "f", "description": secret, "parameters": {}}],
            stream=stream,
        )
        if stream:
            for _ in response:  # type: ignore[union-attr]
                pass
    server.enqueue(ErrorReply(401, f"Incorrect API key provided: {secret}", code="invalid_api_key"))
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])


def test_a_secret_in_every_field_of_every_api_reaches_no_byte_of_the_store_or_logs(
    db: Path, server: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 18: messages, tool arguments and results, tool definitions, prompt variables,
    error messages, request options and other instrumentations' spans, streamed or not: none
    of it in the store, its WAL, the spool or its quarantine, or what we log."""
    caplog.set_level(logging.DEBUG)
    provider = TracerProvider()
    handle = finetuner_otel.instrument(db, tracer_provider=provider, redact=["api_key"])
    try:
        _every_api_call(server, KEY)
        # Another instrumentation's span of a call ours did not trace, content and all.
        foreign = provider.get_tracer("someone.elses.instrumentation")
        with foreign.start_as_current_span(
            "chat m",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "m",
                "gen_ai.input.messages": json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": KEY}]}]
                ),
                "gen_ai.output.messages": json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [{"type": "text", "content": KEY}],
                            "finish_reason": "stop",
                        }
                    ]
                ),
                "custom.note": f"the key {KEY}",
            },
        ):
            pass
        stored = rows(handle)
        assert len(stored) == 8  # 2 x (chat, prompt, responses), the error, the foreign span
        assert any("[REDACTED:api_key]" in json.dumps(r["messages"]) for r in stored)
    finally:
        handle.shutdown()
        provider.shutdown()
    assert KEY.encode() not in _every_byte(db.parent)
    assert KEY not in caplog.text
