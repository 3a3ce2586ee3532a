"""Property-based: whatever messages and arguments an app passes, the call returns exactly what
the bare SDK returns (or raises exactly what it raises), nothing of ours raises, and what is
stored round-trips to what the SDK sent."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import finetuner_otel
from finetuner_otel.testing import OpenAIServer

texts = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40),
    st.sampled_from(["", "🙂 émoji", "a\x00b", "</script>", '{"json": "looking"}', "x" * 100_000]),
)
parts = st.lists(st.builds(lambda t: {"type": "text", "text": t}, texts), max_size=3)
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "developer", "user", "assistant"]),
            "content": st.one_of(texts, parts),
        }
    ),
    min_size=1,
    max_size=5,
)
containers = st.sampled_from(["list", "tuple", "generator"])
temperatures = st.one_of(
    st.just(openai.NOT_GIVEN),
    st.just(openai.omit),
    st.none(),
    st.floats(min_value=0, max_value=2, allow_nan=False),
)
odd = st.sampled_from([None, "bytes", "set", "object"])


def _with_odd(msgs: list[dict[str, Any]], kind: str | None) -> list[Any]:
    if kind is None:
        return msgs
    odd_value: Any = {"bytes": b"raw", "set": {"a"}, "object": object()}[kind]
    return [*msgs[:-1], {**msgs[-1], "content": odd_value}]


def _container(msgs: list[Any], kind: str) -> Callable[[], Any]:
    if kind == "tuple":
        return lambda: tuple(msgs)
    if kind == "generator":
        return lambda: (m for m in msgs)
    return lambda: list(msgs)


def _outcome(call: Callable[[], Any]) -> tuple[tuple[str, Any], str | None]:
    """What the call gave (ids and times aside), and the response id."""
    try:
        result = call()
    except Exception as exc:  # the user's own error: must be the same with and without us
        return ("raised", (type(exc), str(exc))), None
    if isinstance(result, openai.Stream):
        chunks = list(result)
        dumped = [c.model_dump(exclude={"id", "created"}) for c in chunks]
        return ("stream", dumped), chunks[0].id if chunks else None
    return ("ok", result.model_dump(exclude={"id", "created"})), result.id


def _normalise(message: dict[str, Any]) -> dict[str, Any]:
    """The documented shape of a stored message: one text part is stored as plain text."""
    content = message.get("content")
    if isinstance(content, list):
        if len(content) == 1:
            content = content[0]["text"]
        elif not content:
            content = None if message["role"] == "assistant" else ""
    return {"role": message["role"], "content": content}


class _InternalErrors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "internal error" in record.getMessage():
            self.records.append(record)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, OpenAIServer]]:
    db = tmp_path_factory.mktemp("props") / "finetuner.duckdb"
    with OpenAIServer() as server:
        handle = finetuner_otel.instrument(db)
        errors = _InternalErrors()
        logger = logging.getLogger("finetuner_otel")
        logger.addHandler(errors)
        level = logger.level
        logger.setLevel(logging.DEBUG)
        try:
            yield handle, server, errors
        finally:
            logger.removeHandler(errors)
            logger.setLevel(level)
            handle.shutdown()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    msgs=messages,
    container=containers,
    temperature=temperatures,
    stream=st.booleans(),
    odd_kind=odd,
)
def test_the_call_is_untouched_and_the_record_round_trips(
    env: tuple[Any, OpenAIServer, _InternalErrors],
    msgs: list[dict[str, Any]],
    container: str,
    temperature: Any,
    stream: bool,
    odd_kind: str | None,
) -> None:
    handle, server, errors = env
    client = server.client(max_retries=0)
    make = _container(_with_odd(msgs, odd_kind), container)
    create = openai.resources.chat.completions.Completions.create
    bare_create = openai.resources.chat.completions.Completions.__dict__["create"].__wrapped__

    def bare() -> Any:
        return bare_create(
            client.chat.completions,
            model="m",
            messages=make(),
            temperature=temperature,
            stream=stream,
        )

    def ours() -> Any:
        return create(
            client.chat.completions,
            model="m",
            messages=make(),
            temperature=temperature,
            stream=stream,
        )

    expected = _outcome(bare)[0]
    before = len(server.requests)
    got, response_id = _outcome(ours)
    assert got == expected
    assert not errors.records, errors.records[0].exc_info
    if response_id is None or odd_kind is not None:
        return  # odd content is not valid API input: the call must only behave as it would
    sent = server.requests[before].json
    [stored] = (
        handle.open_store().sql("SELECT messages FROM calls WHERE response_id = ?", [response_id])
    ).rows
    assert json.loads(stored[0]) == [_normalise(m) for m in sent["messages"]]
