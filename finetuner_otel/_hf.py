"""From OpenAI's chat fine-tuning format to what Hugging Face chat templates expect.

A ``train.jsonl`` that OpenAI accepts is not quite what ``tokenizer.apply_chat_template`` (and so
TRL's ``SFTTrainer``) takes. The conversion, one rule per difference:

- **Content.** A string stays a string. A list of text parts (``[{"type": "text", "text": ...}]``,
  valid for OpenAI) becomes one string per message, the texts joined by a newline: most
  templates concatenate ``message.content`` with strings and fail on a list. Only a message
  that holds an image keeps a list, of HF parts: ``{"type": "text", "text": ...}`` and
  ``{"type": "image", "url": ...}`` (from OpenAI's ``image_url``). Other messages of the same
  example or dataset are not touched: a dataset stores each message as JSON (``datasets.Json``),
  so one message with parts does not force parts on every other. A refusal part is text.
  Audio and file parts have no HF template form: ``HFConversionError`` names the examples.
- **Tool calls.** ``function.arguments`` is JSON text for OpenAI and an object for HF templates
  (they render it with ``tojson``: left as text, the model would learn string-encoded
  arguments). It is parsed; text that is not a JSON object is an error naming the example.
  Call ids become 9 letters and digits derived from the original (Mistral's templates demand
  exactly that; the others do not render ids), the same in the call and in its result.
- **Tools.** The ``tools`` list is kept as it is (OpenAI's ``{"type": "function", "function":
  {...}}`` is the shape HF templates read) and handed to the template: in a dataset, as JSON
  text in a ``tools`` column, which TRL parses and passes to ``apply_chat_template``.
- **Everything else** (``weight``, ``name``, ``refusal`` keys) is kept; templates ignore keys they
  do not know. Note that TRL does not read ``weight`` either: the local trainer trains on the
  whole rendered conversation, weight-0 history included (TRL's ``assistant_only_loss`` needs a
  template with ``{% generation %}`` marks, which none of the common ones have). Where only the
  last answer of every example has weight (a single answer, or ``history_weight=0``), the local
  trainer gives TRL prompt-completion rows instead (``prompt_completion``), and the loss is
  taken on that answer alone, as OpenAI takes it.

``check_template(tokenizer, records)`` renders every converted example through a tokenizer's
chat template and raises ``HFConversionError`` naming the examples it cannot render (the
template's own message), and those with images when the template takes text only (found by
rendering: ``takes_images``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ._errors import ConfigurationError

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_TEXT_PARTS = ("text", "refusal")


class HFConversionError(ConfigurationError):
    """Examples that cannot be given to a Hugging Face chat template; ``.problems`` holds
    ``(example id, reason)`` pairs."""

    def __init__(self, message: str, problems: Sequence[tuple[str, str]]) -> None:
        super().__init__(message)
        self.problems = list(problems)


def short_call_id(call_id: str) -> str:
    """A tool call's id as 9 letters and digits, the same for the same id."""
    digest = int.from_bytes(hashlib.sha256(call_id.encode()).digest()[:8], "big")
    chars = []
    for _ in range(9):
        digest, index = divmod(digest, len(_ID_ALPHABET))
        chars.append(_ID_ALPHABET[index])
    return "".join(chars)


def _content(content: Any) -> Any:
    """A message's content for HF: text parts as one string, image messages as HF parts."""
    if not isinstance(content, list):
        return content
    if all(isinstance(p, Mapping) and p.get("type") in _TEXT_PARTS for p in content):
        return "\n".join(str(p.get("text", p.get("refusal", ""))) for p in content)
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in _TEXT_PARTS:
            parts.append({"type": "text", "text": str(part.get("text", part.get("refusal", "")))})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, Mapping) else image
            parts.append({"type": "image", "url": str(url)})
        else:
            raise ValueError(
                f"a {kind!r} content part has no Hugging Face chat-template form; "
                f"only text and image_url parts do"
            )
    return parts


def _arguments(arguments: Any) -> Any:
    if isinstance(arguments, Mapping):
        return dict(arguments)
    try:
        value = json.loads(arguments)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"tool-call arguments are not JSON ({exc}): {arguments!r:.80}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"tool-call arguments are JSON but not an object: {arguments!r:.80}")
    return value


def _tool_call(call: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(call)
    function = dict(call.get("function") or {})
    function["arguments"] = _arguments(function.get("arguments", "{}"))
    out["function"] = function
    if isinstance(call.get("id"), str):
        out["id"] = short_call_id(call["id"])
    return out


def hf_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """One message in OpenAI's chat format as an HF chat template reads it (see the module's
    docstring); a ValueError says what cannot be converted."""
    out = dict(message)
    if "content" in out:
        out["content"] = _content(out["content"])
    if out.get("tool_calls"):
        out["tool_calls"] = [_tool_call(c) for c in out["tool_calls"]]
    if isinstance(out.get("tool_call_id"), str):
        out["tool_call_id"] = short_call_id(out["tool_call_id"])
    return out


def has_images(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether converted messages hold an image part."""
    return any(
        isinstance(m.get("content"), list)
        and any(isinstance(p, Mapping) and p.get("type") == "image" for p in m["content"])
        for m in messages
    )


def hf_records(
    records: Sequence[Mapping[str, Any]], ids: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """OpenAI chat fine-tuning records (``{"messages": [...], "tools": [...]}``) as HF dataset
    rows: ``messages`` converted, ``tools`` as JSON text (None without tools). Every example
    that cannot be converted is named in one HFConversionError."""
    ids = list(ids) if ids is not None else [f"line {n + 1}" for n in range(len(records))]
    rows: list[dict[str, Any]] = []
    problems: list[tuple[str, str]] = []
    for ident, record in zip(ids, records, strict=True):
        try:
            messages = [hf_message(m) for m in record.get("messages") or []]
        except ValueError as exc:
            problems.append((ident, str(exc)))
            continue
        tools = record.get("tools")
        rows.append({"messages": messages, "tools": json.dumps(tools) if tools else None})
    if problems:
        raise HFConversionError(
            _summary("cannot be converted for HF chat templates", problems), problems
        )
    return rows


def trains_last_answer_only(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Whether every row trains on its last message alone, as OpenAI would: it is an assistant
    message and every earlier assistant message has ``weight`` 0 (or there is none)."""

    def last_only(messages: Sequence[Mapping[str, Any]]) -> bool:
        if not messages or messages[-1].get("role") != "assistant":
            return False
        if messages[-1].get("weight") == 0:
            return False
        return all(m.get("weight") == 0 for m in messages[:-1] if m.get("role") == "assistant")

    return bool(rows) and all(last_only(r["messages"]) for r in rows)


def prompt_completion(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of ``hf_records`` in TRL's prompt-completion form (``prompt``: the messages before
    the last, ``completion``: the last), for which TRL computes the loss on the completion
    only: what OpenAI trains on when only the last answer has weight (see
    ``trains_last_answer_only``)."""
    return [
        {"prompt": r["messages"][:-1], "completion": r["messages"][-1:], "tools": r.get("tools")}
        for r in rows
    ]


def hf_dataset(rows: Sequence[Mapping[str, Any]]) -> Any:
    """Rows of ``hf_records`` (or of ``prompt_completion``) as a ``datasets.Dataset``: each
    message stored as JSON, so its content keeps its own type (a string, or parts where it
    holds an image) and tool-call arguments keep their own keys (Arrow structs would add every
    other example's keys as nulls, which templates then render)."""
    import datasets

    messages = datasets.List(datasets.Json())
    columns = ("prompt", "completion") if rows and "prompt" in rows[0] else ("messages",)
    features = datasets.Features(
        {**{c: messages for c in columns}, "tools": datasets.Value("string")}
    )
    return datasets.Dataset.from_list([dict(r) for r in rows], features=features)


# --- rendering through a real template --------------------------------------------------------

_PROBE = "finetuner-probe-text"


def _render(tokenizer: Any, messages: Any, tools: Any = None, **kwargs: Any) -> str:
    return str(
        tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=False, **kwargs)
    )


def takes_images(tokenizer: Any) -> bool:
    """Whether the tokenizer's (or processor's) chat template renders image parts: a user
    turn with an image and a text renders without error, keeps the text, shows no Python
    repr of the parts, and differs from the same turn without the image."""
    text = {"type": "text", "text": _PROBE}
    with_image = [{"role": "user", "content": [{"type": "image"}, text]}]
    without = [{"role": "user", "content": [text]}]
    try:
        rendered = _render(tokenizer, with_image, add_generation_prompt=True)
        plain = _render(tokenizer, without, add_generation_prompt=True)
    except Exception:  # the template cannot take a list of parts at all
        return False
    leaked = "'type'" in rendered or '"type"' in rendered
    return _PROBE in rendered and not leaked and rendered != plain


def check_template(
    tokenizer: Any, rows: Sequence[Mapping[str, Any]], ids: Sequence[str] | None = None
) -> list[str]:
    """Render every row (of ``hf_records``) through the tokenizer's chat template; the rendered
    texts. Raises HFConversionError naming each example the template refuses (with its
    message), and each example with images when the template takes text only."""
    ids = list(ids) if ids is not None else [f"line {n + 1}" for n in range(len(rows))]
    images_ok: bool | None = None
    rendered: list[str] = []
    problems: list[tuple[str, str]] = []
    for ident, row in zip(ids, rows, strict=True):
        messages = row["messages"]
        if has_images(messages):
            images_ok = takes_images(tokenizer) if images_ok is None else images_ok
            if not images_ok:
                problems.append((ident, "it has images and the chat template takes text only"))
                continue
        tools = json.loads(row["tools"]) if isinstance(row.get("tools"), str) else row.get("tools")
        try:
            text = _render(tokenizer, messages, tools)
        except Exception as exc:  # the template's raise_exception, or a type error in it
            problems.append((ident, f"the chat template refused it: {type(exc).__name__}: {exc}"))
            continue
        dropped = _dropped_tools(messages, tools, text)
        if dropped:
            problems.append((ident, f"the chat template leaves out {dropped}: it takes no tools"))
            continue
        rendered.append(text)
    if problems:
        raise HFConversionError(
            _summary("cannot be rendered by this chat template", problems)
            + "\nLeave them out (store.reject(call_id)) or use a model whose template takes them.",
            problems,
        )
    return rendered


def _dropped_tools(messages: Sequence[Mapping[str, Any]], tools: Any, text: str) -> str | None:
    """What of an example's tool use a template rendered without a trace (some templates skip
    what they do not know, silently: the model would be trained on turns with the calls gone):
    a tool call's name, or a tool definition's name, missing from the rendered text."""
    for message in messages:
        for call in message.get("tool_calls") or ():
            name = (call.get("function") or {}).get("name")
            if isinstance(name, str) and name and name not in text:
                return f"the tool call {name!r}"
    for tool in tools or ():
        name = (tool.get("function") or {}).get("name") if isinstance(tool, Mapping) else None
        if isinstance(name, str) and name and name not in text:
            return f"the tool definition {name!r}"
    return None


def _summary(what: str, problems: Sequence[tuple[str, str]], limit: int = 5) -> str:
    lines = [f"{len(problems)} example(s) {what}:"]
    lines += [f"  {ident}: {reason}" for ident, reason in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)
