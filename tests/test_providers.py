"""Which provider and server a call went to: OpenAI, Azure OpenAI, and OpenAI-compatible servers."""

from __future__ import annotations

import openai
import pytest

from finetuner_otel.instrumentation._content import server_attributes
from finetuner_otel.testing import OpenAIServer, Reply

from .conftest import rows


def test_azure_openai_client(capture, server: OpenAIServer) -> None:
    root = server.url.removesuffix("/v1")
    client = openai.AzureOpenAI(
        azure_endpoint=root, api_version="2024-10-21", api_key="azure-test-key"
    )
    server.enqueue(Reply("from azure"))
    try:
        client.chat.completions.create(
            model="my-deployment", messages=[{"role": "user", "content": "hi"}]
        )
    finally:
        client.close()
    assert server.requests[-1].path.startswith("/openai/deployments/my-deployment/")
    [row] = rows(capture)
    assert row["provider"] == "azure.ai.openai"
    assert row["attributes"]["server.address"] == "127.0.0.1"
    assert row["attributes"]["server.port"] == int(root.rsplit(":", 1)[1])
    assert row["completion"] == {"role": "assistant", "content": "from azure"}


def test_compatible_server_by_base_url(capture, server: OpenAIServer) -> None:
    server.enqueue(Reply("local model"))
    server.client().chat.completions.create(
        model="llama-3", messages=[{"role": "user", "content": "hi"}]
    )
    [row] = rows(capture)
    assert row["provider"] == "openai"  # the protocol; the server says where it ran
    assert row["attributes"]["server.address"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("base_url", "provider", "host", "port"),
    [
        ("https://api.openai.com/v1", "openai", "api.openai.com", 443),
        ("https://api.together.xyz/v1", "together", "api.together.xyz", 443),
        ("https://api.groq.com/openai/v1", "groq", "api.groq.com", 443),
        ("http://localhost:11434/v1", "openai", "localhost", 11434),
        (
            "https://myres.openai.azure.com/openai/v1",
            "azure.ai.openai",
            "myres.openai.azure.com",
            443,
        ),
    ],
)
def test_provider_and_server_from_base_url(
    base_url: str, provider: str, host: str, port: int
) -> None:
    client = openai.OpenAI(base_url=base_url, api_key="k")
    try:
        attrs = server_attributes(client.chat.completions)
    finally:
        client.close()
    assert attrs["gen_ai.provider.name"] == provider
    assert attrs["server.address"] == host and attrs["server.port"] == port
