"""Versioned prompts: a named chat template whose version is derived from its content.

::

    classify = Prompt("classifier", [
        {"role": "system", "content": "Label the query as one of: {{labels}}."},
        {"role": "user", "content": "{{query}}"},
    ])
    client.chat.completions.create(model=..., messages=classify.messages(labels=..., query=q))

The rendered messages are a plain list to the SDK; the instrumentation recognises them and tags
the call with the prompt's name, version and variables, so a dataset can be chosen by prompt
version (``store.get_dataset(name, prompt=classify)``) and re-rendered with a new template
(``dataset.rerender(new_prompt)``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._cot import INSTRUCTION
from ._errors import ConfigurationError
from ._json import dumps

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_ROLES = ("system", "developer", "user", "assistant")


class RenderedMessages(list):  # type: ignore[type-arg]
    """Chat messages rendered from a ``Prompt``: a list, carrying where it came from."""

    prompt: Prompt
    variables: dict[str, str]

    def __init__(self, messages: list[dict[str, Any]], prompt: Prompt, variables: dict[str, str]):
        super().__init__(messages)
        self.prompt = prompt
        self.variables = variables


class Prompt:
    """A named chat template. ``{{name}}`` in a message's content is a variable.

    ``template`` is a list of ``{"role", "content"}`` messages, or one string (a single user
    message). ``version`` is the first 12 hex digits of the SHA-256 of the template, so the same
    text always has the same version and any edit makes a new one. ``chain_of_thought=True``
    asks the model to reason first and answer after, in the format ``finetuner_otel._cot``
    splits (the instruction is part of the template, and so of its version).
    """

    def __init__(
        self,
        name: str,
        template: str | Sequence[Mapping[str, Any]],
        *,
        chain_of_thought: bool = False,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"a prompt needs a non-empty name, got {name!r}")
        if isinstance(template, str):
            template = [{"role": "user", "content": template}]
        if isinstance(template, Mapping) or not isinstance(template, Sequence) or not template:
            raise ConfigurationError(
                f"prompt {name!r}: the template is a string or a non-empty list of "
                f"{{'role': ..., 'content': ...}} messages, got {template!r}"
            )
        messages = []
        for index, message in enumerate(template, 1):
            if (
                not isinstance(message, Mapping)
                or message.get("role") not in _ROLES
                or not isinstance(message.get("content"), str)
            ):
                raise ConfigurationError(
                    f"prompt {name!r}, message {index}: give a role ({', '.join(_ROLES)}) and "
                    f"text content, got {message!r}"
                )
            messages.append(dict(message))
        if chain_of_thought:  # reason first, answer after, in a format the store can split
            if messages[0]["role"] in ("system", "developer"):
                first = messages[0]
                messages[0] = {**first, "content": f"{first['content']}\n\n{INSTRUCTION}"}
            else:
                messages.insert(0, {"role": "system", "content": INSTRUCTION})
        self.chain_of_thought = chain_of_thought
        self.name = name
        self.template: list[dict[str, Any]] = messages
        self.version = hashlib.sha256(dumps(messages, sort_keys=True).encode()).hexdigest()[:12]
        self.variables: tuple[str, ...] = tuple(
            dict.fromkeys(v for m in messages for v in _PLACEHOLDER.findall(m["content"]))
        )

    def __repr__(self) -> str:
        return f"Prompt({self.name!r}, version={self.version!r}, variables={list(self.variables)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Prompt):
            return NotImplemented
        return (self.name, self.version) == (other.name, other.version)

    def __hash__(self) -> int:
        return hash((self.name, self.version))

    def messages(self, **variables: Any) -> RenderedMessages:
        """The chat messages with every ``{{variable}}`` filled in (values as text)."""
        missing = [v for v in self.variables if v not in variables]
        unknown = sorted(set(variables) - set(self.variables))
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing {missing}")
            if unknown:
                parts.append(f"unknown {unknown}")
            raise ConfigurationError(
                f"prompt {self.name!r} takes the variables {list(self.variables)}: "
                f"{' and '.join(parts)}"
            )
        values = {k: v if isinstance(v, str) else str(v) for k, v in variables.items()}
        rendered = [
            {**m, "content": _PLACEHOLDER.sub(lambda match: values[match.group(1)], m["content"])}
            for m in self.template
        ]
        return RenderedMessages(rendered, self, values)
