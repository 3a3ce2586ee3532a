"""More training data when real traffic is thin: generated inputs, answered by a teacher.

::

    from finetuner_otel.synthetic import generate, label

    new = generate(store.get_dataset("search_classifier"), 200, client=client,
                   model="gpt-4o", instructions="include some typos")
    small = label(["query one", "query two"], client=client, teacher_model="gpt-4o",
                  store=store, dataset="distilled")

Every example made here is a call of its dataset with ``finetuner.source=synthetic`` (in SQL:
``calls.source = 'synthetic'``), the model that wrote it and, for ``generate``, the ids of the
seed examples it was written from; choose or leave them out with
``get_dataset(name, where="source <> 'synthetic'")``. The calls made to write them are traced as
tooling (``finetuner.purpose=synthetic``), never as training examples themselves.
"""

from __future__ import annotations

import concurrent.futures
import difflib
import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._context import dataset as dataset_scope
from ._context import purpose
from ._errors import ConfigurationError
from ._json import dumps
from ._messages import last_user_message, message_text
from .store import Dataset, Example, Store

if TYPE_CHECKING:
    import openai

SOURCE = "finetuner.source"
SEEDS = "finetuner.synthetic.seeds"
GENERATOR = "finetuner.synthetic.model"
SCOPE = "finetuner_otel.synthetic"

_GENERATE = """You write new inputs for an AI assistant's training data.
Here are inputs it has received:
{examples}

Write {count} new inputs in the same style, language and length, on varied subjects. Make each
one different from the examples and from each other.{instructions}
Reply with a JSON object only: {{"inputs": ["...", ...]}}"""


def _last_user(example: Example) -> str:
    question = last_user_message(example.messages)
    return message_text(question) if question is not None else ""


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def near_duplicate(text: str, others: Sequence[str], threshold: float = 0.9) -> bool:
    """Whether ``text`` is (after case and white space) at least ``threshold`` similar to one
    of ``others``: difflib's ratio, a cheap upper bound checked first."""
    mine = _normal(text)
    for other in others:
        theirs = _normal(other)
        if mine == theirs:
            return True
        matcher = difflib.SequenceMatcher(None, mine, theirs, autojunk=False)
        if matcher.real_quick_ratio() >= threshold and matcher.ratio() >= threshold:
            return True
    return False


def _complete(
    client: openai.OpenAI, model: str, messages: list[dict[str, Any]], **params: Any
) -> str:
    with purpose("synthetic"), dataset_scope("synthetic"):
        reply = client.chat.completions.create(model=model, messages=messages, **params)  # type: ignore[arg-type]
    return reply.choices[0].message.content or ""


def _record(
    store: Store,
    dataset: str,
    conversations: list[list[dict[str, Any]]],
    attributes: list[dict[str, Any]],
    model: str,
) -> Dataset:
    """Store the answered conversations as calls of ``dataset``; the new examples."""
    return store.add_examples(
        [{"messages": c} for c in conversations],
        dataset=dataset,
        scope=SCOPE,
        model=model,
        attributes=attributes,
    )


def _answer_all(
    client: openai.OpenAI,
    teacher_model: str,
    inputs: list[list[dict[str, Any]]],
    concurrency: int,
    params: Mapping[str, Any],
) -> list[str]:
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda m: _complete(client, teacher_model, m, **params), inputs))


def _new_inputs(client: openai.OpenAI, model: str, prompt: str) -> list[str]:
    """One round of new inputs from ``model``: the non-empty strings of its JSON reply's
    ``inputs`` (none for an unusable reply: the caller asks again)."""
    text = _complete(
        client,
        model,
        [{"role": "user", "content": prompt}],
        response_format={"type": "json_object"},
        temperature=1,
    )
    try:
        candidates = json.loads(text)["inputs"]
    except (ValueError, KeyError, TypeError):
        return []
    if not isinstance(candidates, list):
        return []
    return [c.strip() for c in candidates if isinstance(c, str) and c.strip()]


def generate(
    dataset: Dataset,
    n: int,
    *,
    client: openai.OpenAI,
    model: str,
    teacher_model: str | None = None,
    instructions: str | None = None,
    into: str | None = None,
    store: Store | None = None,
    seeds: int = 5,
    similarity: float = 0.9,
    seed: int = 0,
    concurrency: int = 8,
    max_rounds: int = 5,
) -> Dataset:
    """``n`` new examples like ``dataset``'s: ``model`` writes new inputs from a sample of
    ``seeds`` examples, near-duplicates (``similarity``) of existing or of each other's inputs
    are dropped, and ``teacher_model`` (default ``model``) answers the rest, with the seed
    examples' system message. Stored in ``into`` (default: the same dataset); returns them."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigurationError(f"generate() makes n >= 1 examples, got {n!r}")
    if not 0 < similarity <= 1:
        raise ConfigurationError(f"similarity is in (0, 1], got {similarity!r}")
    target_store = store or (dataset.store if isinstance(dataset.store, Store) else None)
    if target_store is None:
        raise ConfigurationError("generate() stores what it makes: pass store= for this dataset")
    sample = list(dataset.sample(seeds, seed=seed))
    if not sample:
        raise ConfigurationError(f"dataset {dataset.name!r} has no examples to learn the style of")
    known = [_last_user(e) for e in dataset]
    system = next((m for m in sample[0].messages if m.get("role") == "system"), None)
    examples = "\n".join(f"- {json.dumps(_last_user(e), ensure_ascii=False)}" for e in sample)
    extra = f"\n{instructions.strip()}" if instructions else ""
    accepted: list[str] = []
    for _ in range(max_rounds):
        if len(accepted) >= n:
            break
        prompt = _GENERATE.format(examples=examples, count=n - len(accepted), instructions=extra)
        for candidate in _new_inputs(client, model, prompt):
            if len(accepted) < n and not near_duplicate(candidate, [*known, *accepted], similarity):
                accepted.append(candidate)
    if not accepted:
        raise ConfigurationError(
            f"{model} wrote no usable new inputs in {max_rounds} tries (each was a near-duplicate "
            f"or not the JSON asked for); try other instructions or a lower similarity"
        )
    teacher = teacher_model or model
    inputs = [
        [*([dict(system)] if system else []), {"role": "user", "content": text}]
        for text in accepted
    ]
    answers = _answer_all(client, teacher, inputs, concurrency, {"temperature": 0})
    conversations = [
        [*m, {"role": "assistant", "content": a}] for m, a in zip(inputs, answers, strict=True)
    ]
    tags = {SOURCE: "synthetic", GENERATOR: model, SEEDS: dumps([e.id for e in sample])}
    return _record(
        target_store, into or dataset.name, conversations, [tags] * len(conversations), teacher
    )


def label(
    inputs: Sequence[str | Sequence[Mapping[str, Any]]],
    *,
    client: openai.OpenAI,
    teacher_model: str,
    dataset: str,
    store: Store,
    system: str | None = None,
    concurrency: int = 8,
    **params: Any,
) -> Dataset:
    """Distillation: ``teacher_model`` answers each input (a user text, or chat messages) and
    the answers become examples of ``dataset``, for training a smaller model."""
    if not inputs:
        raise ConfigurationError("label() needs at least one input")
    conversations_in: list[list[dict[str, Any]]] = []
    for item in inputs:
        if isinstance(item, str):
            messages = [{"role": "user", "content": item}]
        elif isinstance(item, Sequence) and all(isinstance(m, Mapping) for m in item):
            messages = [dict(m) for m in item if isinstance(m, Mapping)]
        else:
            raise ConfigurationError(f"an input is a text or a list of chat messages, got {item!r}")
        if system and not any(m.get("role") == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": system})
        conversations_in.append(messages)
    params.setdefault("temperature", 0)
    answers = _answer_all(client, teacher_model, conversations_in, concurrency, params)
    conversations = [
        [*m, {"role": "assistant", "content": a}]
        for m, a in zip(conversations_in, answers, strict=True)
    ]
    tags = {SOURCE: "synthetic", GENERATOR: teacher_model}
    return _record(store, dataset, conversations, [tags] * len(conversations), teacher_model)
