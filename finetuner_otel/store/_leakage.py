"""Train/eval leakage: examples of one dataset whose input is also in another.

``leakage(train, test)`` finds, for each example of ``test``, an example of ``train`` with the
same input, exactly or nearly:

- **The input** is an example's messages before its target, without system messages (a
  system prompt is usually shared by every example, and would make all of them look alike;
  when an example has nothing else, its system messages are used). Each message's text is
  taken (text parts joined), one message a line.
- **Exact**: equal after normalising: Unicode NFKC, case folded, every run of whitespace one
  space, trimmed.
- **Near**: the Jaccard similarity of the two inputs' sets of word shingles (``shingle``
  consecutive words, default 3, words being runs of letters and digits of the normalised
  text) is at least ``threshold`` (default 0.7). Candidates come from MinHash LSH
  (``datasketch``, ``num_perm`` permutations, default 128), the standard way to find
  near-duplicates without comparing every pair; each candidate's Jaccard is then computed
  exactly on the shingle sets, so a reported match is never an artefact of the sketch. The
  LSH bands favour recall: at the default settings a pair at the threshold is found with
  probability 0.99, one 0.1 above it all but surely. The same ticket with another
  greeting and sign-off scores about 0.8 (tests/test_leakage.py); two different tickets of
  the same shop, sharing words such as "order 4411" or "refund", under 0.1.

Near-duplicates need the ``leakage`` extra (``pip install 'finetuner-otel[leakage]'``);
``near=False`` checks exact repeats only, with nothing to install.
"""

from __future__ import annotations

import importlib
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .._errors import ConfigurationError
from .._messages import message_text


class Example(Protocol):
    """What leakage reads of an example (``store.Example`` has it)."""

    @property
    def id(self) -> str: ...
    @property
    def messages(self) -> list[dict[str, Any]]: ...


THRESHOLD = 0.7
SHINGLE = 3
NUM_PERM = 128
_WORDS = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """``text`` as exact matching compares it: NFKC, case folded, whitespace collapsed."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def input_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """An example's input as leakage compares it (see the module docstring)."""
    own = [m for m in messages if m.get("role") != "system"] or list(messages)
    return "\n".join(message_text(m) for m in own)


def shingles(text: str, size: int = SHINGLE) -> set[str]:
    """The word shingles of a normalised text (the whole text when it has fewer words)."""
    words = _WORDS.findall(text)
    if len(words) <= size:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


@dataclass(frozen=True)
class Overlap:
    """One example of the second dataset (``other``) found in the first (``example``)."""

    kind: str  # exact | near
    example: str  # the id in the first dataset (e.g. training)
    other: str  # the id in the second (e.g. eval)
    similarity: float  # Jaccard of word shingles; 1.0 for an exact repeat
    example_text: str
    other_text: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "example": self.example,
            "other": self.other,
            "similarity": round(self.similarity, 4),
            "example_text": self.example_text,
            "other_text": self.other_text,
        }


@dataclass(frozen=True)
class Leakage:
    """What ``Dataset.leakage(other)`` found: each example of ``other`` whose input is in this
    dataset, exactly (``exact``) or nearly (``near``), and how it was compared (``method``)."""

    dataset: str
    other: str
    examples: int
    other_examples: int
    exact: list[Overlap] = field(default_factory=list)
    near: list[Overlap] = field(default_factory=list)
    threshold: float = THRESHOLD
    shingle: int = SHINGLE
    num_perm: int = NUM_PERM
    checked_near: bool = True

    @property
    def overlaps(self) -> list[Overlap]:
        return [*self.exact, *self.near]

    @property
    def leaked(self) -> frozenset[str]:
        """The ids of the examples of ``other`` found in this dataset."""
        return frozenset(o.other for o in self.overlaps)

    @property
    def count(self) -> int:
        return len(self.leaked)

    @property
    def method(self) -> str:
        exact = "exact: input equal after NFKC, case folding and whitespace collapsing"
        if not self.checked_near:
            return exact + "; near-duplicates not checked (install finetuner-otel[leakage])"
        return (
            f"{exact}; near: Jaccard >= {self.threshold} of {self.shingle}-word shingles, "
            f"candidates by MinHash LSH ({self.num_perm} permutations, datasketch)"
        )

    def summary(self) -> str:
        share = self.count / self.other_examples if self.other_examples else 0.0
        return (
            f"{self.count} of {self.other_examples} examples of {self.other} ({share:.1%}) are "
            f"in {self.dataset} ({self.examples} examples): {len(self.exact)} exact, "
            f"{len(self.near)} near-duplicates ({self.method})"
        )

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "other": self.other,
            "examples": self.examples,
            "other_examples": self.other_examples,
            "leaked": self.count,
            "exact": [o.to_dict() for o in self.exact],
            "near": [o.to_dict() for o in self.near],
            "method": self.method,
            "threshold": self.threshold,
            "shingle": self.shingle,
            "num_perm": self.num_perm if self.checked_near else None,
        }


def _check(threshold: float, shingle: int, num_perm: int) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ConfigurationError(f"threshold is a Jaccard similarity in (0, 1], got {threshold!r}")
    if not 0.0 < threshold <= 1.0:
        raise ConfigurationError(f"threshold is a Jaccard similarity in (0, 1], got {threshold}")
    for name, value, least in (("shingle", shingle, 1), ("num_perm", num_perm, 16)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigurationError(f"{name} must be a whole number >= {least}, got {value!r}")


def find_leakage(
    name: str,
    examples: Sequence[Example],
    other_name: str,
    other: Sequence[Example],
    *,
    near: bool = True,
    threshold: float = THRESHOLD,
    shingle: int = SHINGLE,
    num_perm: int = NUM_PERM,
) -> Leakage:
    """The examples of ``other`` whose input is in ``examples`` (see the module docstring)."""
    _check(threshold, shingle, num_perm)
    texts = [input_text(e.messages) for e in examples]
    other_texts = [input_text(e.messages) for e in other]
    normal = [normalise(t) for t in texts]
    other_normal = [normalise(t) for t in other_texts]
    first: dict[str, int] = {}
    for index, text in enumerate(normal):
        first.setdefault(text, index)
    exact, rest = [], []
    for index, text in enumerate(other_texts):
        match = first.get(other_normal[index])
        if match is None:
            rest.append(index)
            continue
        exact.append(Overlap("exact", examples[match].id, other[index].id, 1.0, texts[match], text))
    found: list[Overlap] = []
    if near and rest:
        pairs = _near_pairs(normal, [other_normal[i] for i in rest], threshold, shingle, num_perm)
        for j, (i, similarity) in sorted(pairs.items()):
            o = rest[j]
            found.append(
                Overlap("near", examples[i].id, other[o].id, similarity, texts[i], other_texts[o])
            )
    return Leakage(
        dataset=name,
        other=other_name,
        examples=len(examples),
        other_examples=len(other),
        exact=exact,
        near=found,
        threshold=threshold,
        shingle=shingle,
        num_perm=num_perm,
        checked_near=near,
    )


def _minhash_lsh() -> Any:
    try:
        datasketch = importlib.import_module("datasketch")  # an optional extra: untyped here
    except ImportError:
        raise ConfigurationError(
            "near-duplicate leakage needs datasketch: pip install 'finetuner-otel[leakage]' "
            "(or pass near=False to check exact repeats only)"
        ) from None
    return datasketch


def _near_pairs(
    left: list[str], right: list[str], threshold: float, size: int, num_perm: int
) -> dict[int, tuple[int, float]]:
    """For each right text that has one, its most similar left text at >= ``threshold``
    (by index), with that Jaccard similarity."""
    datasketch = _minhash_lsh()
    left_sets = [shingles(t, size) for t in left]
    right_sets = [shingles(t, size) for t in right]
    # LSH only proposes candidates; each is then checked against ``threshold`` exactly, so its
    # bands are tuned for recall: set 0.1 below the threshold, a missed pair weighing 0.9 and a
    # false candidate 0.1. With 128 permutations and a threshold of 0.7, a pair at 0.7 is
    # proposed with probability 0.99, one at 0.8 all but surely, one at 0.3 with 0.06 (at the
    # threshold itself with even weights, datasketch's default: 0.44 at 0.7, 0.87 at 0.8).
    # Past 0.9 its bands would be too few to build.
    lsh = datasketch.MinHashLSH(
        threshold=min(max(threshold - 0.1, 0.1), 0.9), num_perm=num_perm, weights=(0.1, 0.9)
    )
    # The smaller side is indexed and the larger one queried: the same pairs, less memory.
    small_left = len(left) <= len(right)
    indexed, queried = (left_sets, right_sets) if small_left else (right_sets, left_sets)
    hashes = _sketches(datasketch, indexed, num_perm)
    with lsh.insertion_session() as session:
        for key, (sketch, words) in enumerate(zip(hashes, indexed, strict=True)):
            if words:
                session.insert(key, sketch, check_duplication=False)
    best: dict[int, tuple[int, float]] = {}
    for q, sketch in enumerate(_sketches(datasketch, queried, num_perm)):
        if not queried[q]:
            continue
        for key in lsh.query(sketch):
            i, j = (key, q) if small_left else (q, key)
            similarity = jaccard(left_sets[i], right_sets[j])
            if similarity >= threshold and similarity > best.get(j, (0, 0.0))[1]:
                best[j] = (i, similarity)
    return best


def _sketches(datasketch: Any, sets: Iterable[set[str]], num_perm: int) -> list[Any]:
    # datasketch's own SHA-1 of each shingle. Not CRC-32, though three times faster: it is
    # linear, as are the sketch's permutations, and estimates came out far off (0.58 for 0.73).
    sketches: list[Any] = datasketch.MinHash.bulk(
        ([s.encode() for s in words] for words in sets), num_perm=num_perm
    )
    return sketches
