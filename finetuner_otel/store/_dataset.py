"""``Dataset``: the trainable examples of one dataset, split and exported."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .._errors import ConfigurationError
from .._json import dumps
from ._validate import Stats, ValidationReport, validate_records


@dataclass(frozen=True)
class Example:
    """One training example: the input messages, the target completion, and the tools offered."""

    id: str
    dataset: str
    messages: list[dict[str, Any]]
    completion: dict[str, Any]
    tools: list[dict[str, Any]] | None = None
    model: str | None = None
    created_at: datetime | None = field(default=None, compare=False)

    def to_openai(self) -> dict[str, Any]:
        """The example in OpenAI's chat fine-tuning format (one JSONL line)."""
        record: dict[str, Any] = {"messages": [*self.messages, self.completion]}
        if self.tools:
            record["tools"] = self.tools
        return record


def load_examples(rows: Sequence[tuple[Any, ...]]) -> list[Example]:
    def parsed(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    return [
        Example(
            id=row[0],
            dataset=row[1],
            messages=parsed(row[2]),
            completion=parsed(row[3]),
            tools=parsed(row[4]),
            model=row[5],
            created_at=row[6],
        )
        for row in rows
    ]


def _count(n: object, method: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigurationError(f"{method}() takes a whole number >= 0, got {n!r}")
    return n


def _check_seed(seed: object, method: str) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigurationError(f"{method}() seed must be an integer, got {seed!r}")


def _unit_interval(seed: int, example_id: str) -> float:
    digest = hashlib.blake2b(f"{seed}:{example_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class Dataset(Sequence[Example]):
    """An ordered, read-only collection of examples, loaded from the store on first use.

    The examples are read once and then kept, so ``len``, iteration, ``split`` and exports all
    see the same snapshot.
    """

    def __init__(
        self, name: str, examples: Callable[[], list[Example]] | Sequence[Example]
    ) -> None:
        self.name = name
        self._loader = examples if callable(examples) else None
        self._examples: list[Example] | None = None if callable(examples) else list(examples)

    @property
    def examples(self) -> list[Example]:
        if self._examples is None:
            assert self._loader is not None
            self._examples = self._loader()
        return self._examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: Any) -> Any:
        return self.examples[index]

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    def __repr__(self) -> str:
        size = f"{len(self._examples)} examples" if self._examples is not None else "not loaded"
        return f"Dataset({self.name!r}, {size})"

    def filter(self, predicate: Callable[[Example], bool]) -> Dataset:
        """The examples for which ``predicate(example)`` is true, in order."""
        if not callable(predicate):
            raise ConfigurationError(
                f"filter() takes a function of an Example, got {predicate!r}; e.g. "
                f"ds.filter(lambda e: len(e.messages) <= 4)"
            )
        return Dataset(self.name, [e for e in self.examples if predicate(e)])

    def head(self, n: int) -> Dataset:
        """The first ``n`` examples (oldest first)."""
        return Dataset(self.name, self.examples[: _count(n, "head")])

    def sample(self, n: int, seed: int = 0) -> Dataset:
        """``n`` examples (all, if there are fewer), in dataset order.

        Chosen by a hash of ``seed`` and each example's id, like ``split``: the same seed picks
        the same examples, and as the dataset grows an example leaves the sample only for a
        new one that hashes lower.
        """
        n = _count(n, "sample")
        _check_seed(seed, "sample")
        chosen = {e.id for e in sorted(self.examples, key=lambda e: _unit_interval(seed, e.id))[:n]}
        return Dataset(self.name, [e for e in self.examples if e.id in chosen])

    def dedupe(self, keep: str = "latest") -> Dataset:
        """One example per distinct input (its messages and tools), in dataset order.

        ``keep="latest"`` keeps the most recent call; ``keep="most_common"`` keeps the most
        recent call among those with the input's most frequent completion (a majority vote
        over repeated answers).
        """
        if keep not in ("latest", "most_common"):
            raise ConfigurationError(
                f"dedupe(keep=...) takes 'latest' or 'most_common', got {keep!r}"
            )
        groups: dict[str, list[int]] = {}
        for index, example in enumerate(self.examples):
            key = dumps([example.messages, example.tools], sort_keys=True)
            groups.setdefault(key, []).append(index)
        kept: set[int] = set()
        for indexes in groups.values():
            if keep == "latest":
                kept.add(indexes[-1])
                continue
            votes = Counter(dumps(self.examples[i].completion, sort_keys=True) for i in indexes)
            best = max(votes.values())
            kept.add(
                next(
                    i
                    for i in reversed(indexes)
                    if votes[dumps(self.examples[i].completion, sort_keys=True)] == best
                )
            )
        return Dataset(self.name, [e for i, e in enumerate(self.examples) if i in kept])

    def split(self, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
        """Split into (train, validation), ``fraction`` of the examples going to train.

        Membership comes from a hash of ``seed`` and each example's id, so a split is
        deterministic, the two parts are disjoint and cover every example, and an example keeps
        its side when the dataset grows. The sizes are therefore close to, not exactly,
        ``fraction`` of the whole on small datasets.
        """
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise ConfigurationError(
                f"split() takes the train fraction as a number, got {fraction!r}; e.g. split(0.8)"
            )
        if not 0 < fraction < 1:
            raise ConfigurationError(
                f"split() fraction must be between 0 and 1 (exclusive), got {fraction!r}; "
                f"e.g. split(0.8) keeps 80% for training"
            )
        _check_seed(seed, "split")
        train: list[Example] = []
        val: list[Example] = []
        for example in self.examples:
            (train if _unit_interval(seed, example.id) < fraction else val).append(example)
        return Dataset(f"{self.name}[train]", train), Dataset(f"{self.name}[val]", val)

    def validate(
        self,
        model: str | None = None,
        *,
        encoding: Any = None,
        context: int | None = None,
        epochs: int | None = None,
    ) -> ValidationReport:
        """Check the examples as OpenAI checks a chat fine-tuning file, and count their tokens.

        ``model`` is the model you will fine-tune (default: the model most of the examples
        called); it picks the tiktoken encoding and the training context (``context``
        overrides). ``report.ok``, ``report.errors``, ``report.problems``, ``print(report)``.
        """
        return validate_records(
            [example.to_openai() for example in self.examples],
            model=model if model is not None else self._usual_model(),
            encoding=encoding,
            context=context,
            epochs=epochs,
            ids=[example.id for example in self.examples],
        )

    def stats(
        self,
        model: str | None = None,
        *,
        encoding: Any = None,
        context: int | None = None,
        epochs: int | None = None,
    ) -> Stats:
        """Counts, the token distribution and a training-token estimate for ``epochs`` epochs
        (default: as many as OpenAI would choose); see ``validate`` for the arguments."""
        return self.validate(model, encoding=encoding, context=context, epochs=epochs).stats

    def _usual_model(self) -> str | None:
        models = Counter(e.model for e in self.examples if e.model)
        return models.most_common(1)[0][0] if models else None

    def to_jsonl(self, path: str | os.PathLike[str]) -> Path:
        """Write the examples in OpenAI's chat fine-tuning format, one per line.

        The file appears whole or not at all (written beside, then renamed into place).
        """
        return write_jsonl(path, (example.to_openai() for example in self.examples))


def write_jsonl(path: str | os.PathLike[str], records: Iterable[Any]) -> Path:
    """Write JSON records one a line, atomically: written beside ``path``, then renamed."""
    target = Path(path)
    if target.is_dir():
        raise ConfigurationError(f"{target} is a directory; give a file path like train.jsonl")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(dumps(record) + "\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
