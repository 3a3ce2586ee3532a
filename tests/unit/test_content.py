"""``finetuner_otel.instrumentation._content``: who the call went to, and the request and
response attributes, from real SDK clients and objects (nothing is sent)."""

from __future__ import annotations

import json

import openai
import pytest
from openai.types.chat import ChatCompletion

from finetuner_otel import _semconv as sc
from finetuner_otel._parts import Parts
from finetuner_otel.instrumentation._content import (
    provider_name,
    request_attributes,
    response_attributes,
    server_attributes,
)
from finetuner_otel.instrumentation._options import CaptureOptions


@pytest.mark.parametrize(
    ("host", "provider"),
    [
        ("api.openai.com", "openai"),
        ("api.groq.com", "groq"),
        ("API.Mistral.AI", "mistral_ai"),
        ("api.together.xyz", "together"),
        ("generativelanguage.googleapis.com", "gcp.gemini"),
        ("acme.openai.azure.com", "azure.ai.openai"),
        ("acme.cognitiveservices.azure.com", "azure.ai.openai"),
        ("localhost", "openai"),  # vLLM, Ollama, a proxy: the OpenAI protocol
        (None, "openai"),
    ],
)
def test_provider_name_by_host(host: str | None, provider: str) -> None:
    assert provider_name(None, host) == provider


def test_an_azure_client_is_azure_whatever_its_host() -> None:
    client = openai.AzureOpenAI(
        api_key="k", api_version="2024-10-21", base_url="https://gateway.example/openai"
    )
    assert provider_name(client, "gateway.example") == "azure.ai.openai"
    assert server_attributes(client.chat.completions)[sc.PROVIDER_NAME] == "azure.ai.openai"


@pytest.mark.parametrize(
    ("base_url", "host", "port"),
    [
        ("http://127.0.0.1:8123/v1", "127.0.0.1", 8123),
        ("https://api.groq.com/openai/v1", "api.groq.com", 443),
        ("http://ollama.lan/v1", "ollama.lan", 80),
    ],
)
def test_server_attributes_of_a_client(base_url: str, host: str, port: int) -> None:
    client = openai.OpenAI(api_key="k", base_url=base_url)
    attrs = server_attributes(client.chat.completions)
    assert attrs[sc.OPERATION_NAME] == "chat"
    assert (attrs[sc.SERVER_ADDRESS], attrs[sc.SERVER_PORT]) == (host, port)
    # the same for the client's other resources, and again (cached by the URL object)
    assert server_attributes(client.responses) == attrs
    assert server_attributes(client.chat.completions) == attrs


def test_no_client_gives_only_the_operation_and_provider() -> None:
    assert server_attributes(object()) == {sc.OPERATION_NAME: "chat", sc.PROVIDER_NAME: "openai"}


def test_request_attributes() -> None:
    client = openai.OpenAI(api_key="k", base_url="http://127.0.0.1:9/v1")
    kwargs = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hello there"}],
        "temperature": 0.2,
        "max_tokens": 50,
        "n": 2,
        "stop": "END",
        "seed": 7,
        "top_p": True,  # a bool is not a number here
        "response_format": {"type": "json_object"},
        "logprobs": True,
        "timeout": 3,  # transport, not an option
    }
    attrs = request_attributes(kwargs, client.chat.completions, CaptureOptions(parts=Parts(5)))
    assert attrs[sc.REQUEST_MODEL] == "gpt-4o-mini"
    assert (attrs[sc.REQUEST_TEMPERATURE], attrs[sc.REQUEST_SEED]) == (0.2, 7)
    assert sc.REQUEST_TOP_P not in attrs
    assert (attrs[sc.REQUEST_MAX_TOKENS], attrs[sc.REQUEST_CHOICE_COUNT]) == (50, 2)
    assert attrs[sc.REQUEST_STOP_SEQUENCES] == ("END",)
    assert attrs[sc.OUTPUT_TYPE] == "json"
    assert json.loads(attrs[sc.REQUEST_OPTIONS]) == {
        "response_format": {"type": "json_object"},
        "logprobs": True,
    }
    (message,) = json.loads(attrs[sc.INPUT_MESSAGES])
    assert message["parts"][0]["content"] is None  # 11 characters, over the cap of 5
    assert attrs[sc.CONTENT_OMITTED] is True


def test_response_attributes_of_an_sdk_completion() -> None:
    completion = ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "hi"},
                },
                {
                    "index": 1,
                    "finish_reason": "length",
                    "message": {"role": "assistant", "content": "h"},
                },
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
        }
    )
    attrs = response_attributes(completion, CaptureOptions())
    assert attrs[sc.RESPONSE_ID] == "chatcmpl-1"
    assert attrs[sc.RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"
    assert attrs[sc.RESPONSE_FINISH_REASONS] == ("stop", "length")
    assert (attrs[sc.USAGE_INPUT_TOKENS], attrs[sc.USAGE_OUTPUT_TOKENS]) == (9, 2)
    assert json.loads(attrs[sc.OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "hi"}],
            "finish_reason": "stop",
        },
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "h"}],
            "finish_reason": "length",
        },
    ]
