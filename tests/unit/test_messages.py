"""``finetuner_otel._messages``: the text of a chat message, and the last question asked."""

from __future__ import annotations

from finetuner_otel._messages import last_user_message, message_text


def test_message_text() -> None:
    assert message_text({"role": "user", "content": "hi"}) == "hi"
    parts = [
        {"type": "text", "text": "a "},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},  # no text
        {"type": "text", "text": "b"},
        "not a part",
    ]
    assert message_text({"role": "user", "content": parts}) == "a b"
    assert message_text({"role": "assistant", "content": None, "tool_calls": []}) == ""
    assert message_text({"role": "assistant"}) == ""


def test_last_user_message() -> None:
    first = {"role": "user", "content": "1"}
    last = {"role": "user", "content": "2"}
    conversation = [{"role": "system", "content": "s"}, first, {"role": "assistant"}, last]
    assert last_user_message(conversation) is last
    assert last_user_message(iter([first, "junk", {"role": "assistant"}])) is first
    assert last_user_message([{"role": "system", "content": "s"}]) is None
    assert last_user_message([]) is None
