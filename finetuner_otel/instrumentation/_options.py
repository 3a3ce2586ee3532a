"""``CaptureOptions``: what ``instrument()`` was given, as one frozen value.

Built once in ``OpenAIInstrumentor._instrument`` from its arguments and the ``FINETUNER_*``
environment, then carried by the wrappers, each call and each stream buffer, as the contrib
instrumentation carries ``capture_content`` into its wrappers. Nothing here is module state, so
two instrumentations (or a store's import) never read each other's settings.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import _encoded as encoded
from .._json import dumps, dumps_noting
from .._parts import Parts
from .._redact import Redactor, from_environment, make_redactor
from .._settings import (
    DEFAULT_DATASET,
    DEFAULT_MAX_CONTENT_SIZE,
    load_default_dataset,
    load_max_content_size,
)
from ._extensions import Extensions


@dataclass(frozen=True)
class CaptureOptions:
    """How calls are captured: the default dataset, the content cap and the redactor."""

    default_dataset: str = DEFAULT_DATASET
    parts: Parts = field(default_factory=lambda: Parts(DEFAULT_MAX_CONTENT_SIZE))
    redactor: Redactor | None = None
    # The shadows and routes registered with this instrumentation (finetuner_otel.shadow).
    extensions: Extensions = field(default_factory=Extensions, compare=False)

    @classmethod
    def load(
        cls, kwargs: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> CaptureOptions:
        """From ``instrument()``'s keywords (``default_dataset``, ``max_content_size``,
        ``redact``), falling back to ``FINETUNER_DATASET``, ``FINETUNER_MAX_CONTENT_SIZE`` and
        ``FINETUNER_REDACT``."""
        env = os.environ if environ is None else environ
        dataset = load_default_dataset(kwargs.get("default_dataset"), env)
        size = kwargs.get("max_content_size") or load_max_content_size(env)
        redactor = make_redactor(kwargs.get("redact")) or from_environment(
            env.get("FINETUNER_REDACT")
        )
        return cls(dataset, Parts(size), redactor)

    def encode_messages(self, messages: list[Any]) -> str:
        """Semconv messages (or instruction parts) as the attribute's JSON, redacted first."""
        redactor = self.redactor
        value = redactor.messages(messages) if redactor is not None else messages
        if not encoded.enabled():  # no store exporter in this process
            return dumps(value)
        text, plain = dumps_noting(value)
        if plain:  # the store's exporter reads the value, not the text back
            encoded.remember(text, value)
        return text

    def encode_value(self, value: Any) -> str:
        """Any other recorded value (request options, tool definitions, prompt variables) as
        JSON, every string in it redacted first."""
        redactor = self.redactor
        if redactor is None:
            return dumps(value)
        return dumps(redactor.value(json.loads(dumps(value))))

    def redact_text(self, text: str) -> str:
        redactor = self.redactor
        return redactor.text(text) if redactor is not None else text
