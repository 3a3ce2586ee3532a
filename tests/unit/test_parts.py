"""``finetuner_otel._parts``: OpenAI chat messages and Responses content to semconv parts, and
the content cap (a part over it left out whole and marked, never cut)."""

from __future__ import annotations

from typing import Any

from openai.types.chat import ChatCompletionMessage

from finetuner_otel import _semconv as sc
from finetuner_otel._json import dumps
from finetuner_otel._parts import (
    Parts,
    media_part,
    omitted_content,
    semconv_finish_reason,
    tool_definitions,
)

PARTS = Parts()


def text(content: str) -> dict[str, Any]:
    return {"type": "text", "content": content}


# --- chat messages ----------------------------------------------------------------------------


def test_a_plain_text_message() -> None:
    assert PARTS.chat_message({"role": "user", "content": "hi"}) == {
        "role": "user",
        "parts": [text("hi")],
    }
    assert PARTS.chat_message({"role": "user", "content": "hi", "name": "ann"}) == {
        "role": "user",
        "parts": [text("hi")],
        "name": "ann",
    }


def test_list_content_of_every_part_type() -> None:
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"file_id": "file-1", "filename": "a.pdf"}},
        {"type": "refusal", "refusal": "no"},
        {"type": "made_up", "x": 1},
    ]
    parts = PARTS.chat_message({"role": "user", "content": content})["parts"]
    assert parts == [
        text("what is this?"),
        {"type": "uri", "modality": "image", "uri": "https://x.test/a.png", "detail": "low"},
        {"type": "blob", "modality": "image", "mime_type": "image/png", "content": "iVBORw0KGgo="},
        {"type": "blob", "modality": "audio", "mime_type": "audio/wav", "content": "UklGRg=="},
        {"type": "file", "modality": "file", "file_id": "file-1", "filename": "a.pdf"},
        {"type": "refusal", "content": "no"},
        {"type": "made_up", "openai": {"type": "made_up", "x": 1}},  # kept whole
    ]


def test_no_content_gives_no_parts() -> None:
    assert PARTS.chat_message({"role": "assistant", "content": None})["parts"] == []
    assert PARTS.chat_content("") == [text("")]  # an empty string is still a text
    assert PARTS.chat_content(b"raw") == [{"type": "bytes", "openai": b"raw"}]


def test_tool_calls_and_refusal_of_an_sdk_message() -> None:
    message = ChatCompletionMessage.model_validate(
        {
            "role": "assistant",
            "content": "calling",
            "refusal": "partly refused",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "f", "arguments": '{"a": 1}'},
                },
                {"id": "c2", "type": "custom", "custom": {"name": "sql", "input": "SELECT 1"}},
            ],
        }
    )
    assert PARTS.chat_message(message) == {
        "role": "assistant",
        "parts": [
            text("calling"),
            {"type": "refusal", "content": "partly refused"},
            # the arguments stay the exact string the SDK received (a space and all)
            {"type": "tool_call", "id": "c1", "name": "f", "arguments": '{"a": 1}'},
            {
                "type": "tool_call",
                "id": "c2",
                "name": "sql",
                "arguments": "SELECT 1",
                "tool_type": "custom",
            },
        ],
    }


def test_legacy_function_call_and_function_result() -> None:
    call = {
        "role": "assistant",
        "content": None,
        "function_call": {"name": "lookup", "arguments": "{}"},
    }
    assert PARTS.chat_message(call)["parts"] == [
        {
            "type": "tool_call",
            "id": None,
            "name": "lookup",
            "arguments": "{}",
            "tool_type": "function_call",
        }
    ]
    result = {"role": "function", "name": "lookup", "content": "42"}
    assert PARTS.chat_message(result) == {
        "role": "function",
        "parts": [{"type": "tool_call_response", "id": None, "response": "42"}],
        "name": "lookup",
    }


def test_tool_results_as_text_or_parts() -> None:
    as_text = {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
    assert PARTS.chat_message(as_text)["parts"] == [
        {"type": "tool_call_response", "id": "c1", "response": "sunny"}
    ]
    as_parts = {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "a"}]}
    assert PARTS.chat_message(as_parts)["parts"] == [
        {"type": "tool_call_response", "id": "c1", "response": [text("a")]}
    ]


def test_chat_output_finish_reasons() -> None:
    out = PARTS.chat_output({"content": "x"}, "tool_calls")
    assert out == {"role": "assistant", "parts": [text("x")], "finish_reason": "tool_call"}
    assert (
        PARTS.chat_output({"role": "assistant", "content": "x"}, "stop")["finish_reason"] == "stop"
    )
    assert (
        PARTS.chat_output({"role": "assistant", "content": "x"}, None)["finish_reason"] == "error"
    )
    assert semconv_finish_reason("function_call") == "tool_call"
    assert semconv_finish_reason("length") == "length"


# --- Responses ----------------------------------------------------------------------------------


def test_responses_parts() -> None:
    content = [
        {"type": "input_text", "text": "in"},
        {"type": "output_text", "text": "out", "annotations": []},
        {"type": "refusal", "refusal": "no"},
        {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "auto"},
        {"type": "input_image", "file_id": "file-9", "detail": "high"},
        {"type": "input_file", "file_url": "https://x.test/a.pdf", "filename": "a.pdf"},
        {"type": "input_audio", "input_audio": {"data": "AAA=", "format": "mp3"}},
        {"type": "computer_screenshot", "image_url": "u"},
    ]
    assert PARTS.responses_content(content) == [
        text("in"),
        text("out"),
        {"type": "refusal", "content": "no"},
        {"type": "uri", "modality": "image", "uri": "https://x.test/a.png"},  # "auto" left out
        {"type": "file", "modality": "image", "file_id": "file-9", "detail": "high"},
        {
            "type": "file",
            "modality": "file",
            "filename": "a.pdf",
            "file_url": "https://x.test/a.pdf",
        },
        {"type": "blob", "modality": "audio", "mime_type": "audio/mp3", "content": "AAA="},
        {"type": "computer_screenshot", "openai": content[-1]},
    ]
    assert PARTS.responses_content("plain") == [text("plain")]
    assert PARTS.responses_content(None) == []


def test_media_part_reads_only_base64_data_urls_as_blobs() -> None:
    assert media_part("data:audio/wav;base64,AAAA", "audio")["type"] == "blob"
    assert media_part("data:;base64,AAAA", "image")["mime_type"] is None
    not_base64 = "data:text/plain,hello"
    assert media_part(not_base64, "image") == {
        "type": "uri",
        "modality": "image",
        "uri": not_base64,
    }


def test_tool_definitions_are_flattened() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "f",
                "description": "d",
                "parameters": {"type": "object"},
                "strict": True,
            },
        },
        {"type": "custom", "custom": {"name": "sql", "format": {"type": "text"}}},
        {"type": "web_search"},
    ]
    assert tool_definitions(tools) == [
        {
            "type": "function",
            "name": "f",
            "description": "d",
            "parameters": {"type": "object"},
            "strict": True,
        },
        {"type": "custom", "name": "sql", "format": {"type": "text"}},
        {"type": "web_search"},
    ]


# --- the cap --------------------------------------------------------------------------------------


def test_the_cap_leaves_content_out_and_marks_it() -> None:
    capped = Parts(5)
    message = capped.chat_message({"role": "user", "content": "123456"})
    assert message == {
        "role": "user",
        "parts": [
            {
                "type": "text",
                "content": None,
                sc.OMITTED_MARKER: {"field": "content", "size": 6, "limit": 5},
            }
        ],
    }
    assert omitted_content(dumps([message]))
    # at the cap, kept whole
    assert capped.chat_message({"role": "user", "content": "12345"})["parts"] == [text("12345")]


def test_the_cap_applies_to_images_files_refusals_and_responses() -> None:
    capped = Parts(3)
    image = capped.chat_part({"type": "image_url", "image_url": {"url": "https://x.test/a"}})
    assert image["uri"] is None and image[sc.OMITTED_MARKER]["field"] == "uri"
    blob = capped.chat_part({"type": "image_url", "image_url": "data:image/png;base64,AAAAAAAA"})
    assert blob["content"] is None and blob[sc.OMITTED_MARKER]["size"] == 8
    file = capped.chat_part({"type": "file", "file": {"file_data": "abcd", "filename": "a"}})
    assert file["file_data"] is None and file["filename"] == "a"
    assert capped.refusal("four")["content"] is None
    assert capped.responses_part({"type": "output_text", "text": "four"})["content"] is None


def test_parts_without_a_limit_cap_nothing() -> None:
    big = "x" * 100_000
    message = PARTS.chat_message({"role": "user", "content": [{"type": "text", "text": big}]})
    assert message["parts"] == [text(big)]
    assert not omitted_content(dumps([message]))


def test_the_marker_key_inside_a_text_is_not_taken_for_a_marker() -> None:
    tricky = f'"{sc.OMITTED_MARKER}": true'
    encoded = dumps([PARTS.chat_message({"role": "user", "content": tricky})])
    assert not omitted_content(encoded)
