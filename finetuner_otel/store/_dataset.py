"""``Dataset``: the trainable examples of one dataset, split and exported."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .._cot import answer_only
from .._errors import ConfigurationError
from .._json import dumps
from .._prompt import Prompt
from ._leakage import Leakage, find_leakage  # issue 22
from ._validate import Stats, ValidationReport, validate_records


class SnapshotLog(Protocol):
    """Where a dataset's exports are recorded: the Store it was read from. Given the file's
    SHA-256, the dataset, the format, the path and the ids of the calls in it, in order, it
    records a snapshot and returns its id."""

    def _record_snapshot(
        self, sha256: str, dataset: str, kind: str, path: Path, call_ids: list[str]
    ) -> str: ...


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
    # Set when the input was rendered from a Prompt: its name, version and variable values.
    prompt_name: str | None = None
    prompt_version: str | None = None
    prompt_variables: dict[str, str] | None = None

    def to_openai(
        self, history_weight: int | None = None, rationale: bool = True
    ) -> dict[str, Any]:
        """The example in OpenAI's chat fine-tuning format (one JSONL line).

        ``history_weight`` (0 or 1) sets ``weight`` on the assistant turns of the input that
        carry none: 0 trains on the completion only, not on earlier answers in the history.
        ``rationale=False`` trains on a chain-of-thought completion's final answer only.
        """
        messages = self.messages
        if history_weight is not None:
            messages = [
                {**m, "weight": history_weight}
                if m.get("role") == "assistant" and "weight" not in m
                else m
                for m in messages
            ]
        completion = self.completion if rationale else answer_only(self.completion)
        record: dict[str, Any] = {"messages": [*messages, completion]}
        if self.tools:
            record["tools"] = self.tools
        return record


# The columns load_examples reads, from the examples view (e) joined to the calls view (c).
EXAMPLE_COLUMNS = (
    "e.id, e.dataset, e.messages, e.completion, e.tools, e.request_model, e.started_at, "
    "c.prompt_name, c.prompt_version, c.prompt_variables"
)


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
            prompt_name=row[7],
            prompt_version=row[8],
            prompt_variables=parsed(row[9]),
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


def _group_key(stratify_by: Any) -> Callable[[Example], Any] | None:
    """A function giving each example's group, as a hashable value."""
    if stratify_by is None:
        return None
    if isinstance(stratify_by, str):
        names = [f.name for f in dataclasses.fields(Example)]
        if stratify_by not in names:
            raise ConfigurationError(
                f"stratify_by={stratify_by!r} is no field of an Example ({', '.join(names)}); "
                f"or pass a function, e.g. stratify_by=lambda e: e.completion['content']"
            )
        name = stratify_by

        def by_field(example: Example) -> Any:
            return getattr(example, name)

        stratify_by = by_field
    if not callable(stratify_by):
        raise ConfigurationError(
            f"stratify_by takes a field name or a function of an Example, got {stratify_by!r}"
        )
    get = stratify_by

    def key(example: Example) -> Any:
        value = get(example)
        try:
            hash(value)
        except TypeError:
            return dumps(value, sort_keys=True)
        return value

    return key


def _unit_interval(seed: int, example_id: str) -> float:
    digest = hashlib.blake2b(f"{seed}:{example_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


# The concrete Path class of this platform: Path itself cannot be subclassed before Python 3.12.
if TYPE_CHECKING:
    _ConcretePath = Path
else:
    _ConcretePath = type(Path())


class Export(_ConcretePath):
    """The path of a written export, with its ``sha256``, how many ``examples`` went in, and
    ``snapshot``: the id of the snapshot that records them in the store (None for a dataset
    not read from a store)."""

    sha256: str
    examples: int
    snapshot: str | None

    @classmethod
    def made(cls, path: Path, sha256: str, examples: int, snapshot: str | None) -> Export:
        export = cls(path)
        export.sha256, export.examples, export.snapshot = sha256, examples, snapshot
        return export


class Dataset(Sequence[Example]):
    """An ordered, read-only collection of examples, loaded from the store on first use.

    The examples are read once and then kept, so ``len``, iteration, ``split`` and exports all
    see the same snapshot. Every export of a dataset read from a store is recorded there as a
    snapshot (``store.snapshots()``): the file's hash and exactly which calls went in.
    """

    def __init__(
        self,
        name: str,
        examples: Callable[[], list[Example]] | Sequence[Example],
        store: SnapshotLog | None = None,
    ) -> None:
        self.name = name
        self.store = store
        self._loader = examples if callable(examples) else None
        self._examples: list[Example] | None = None if callable(examples) else list(examples)

    def _derived(self, examples: list[Example], name: str | None = None) -> Dataset:
        return Dataset(self.name if name is None else name, examples, self.store)

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
        return self._derived([e for e in self.examples if predicate(e)])

    def head(self, n: int) -> Dataset:
        """The first ``n`` examples (oldest first)."""
        return self._derived(self.examples[: _count(n, "head")])

    def sample(self, n: int, seed: int = 0) -> Dataset:
        """``n`` examples (all, if there are fewer), in dataset order.

        Chosen by a hash of ``seed`` and each example's id, like ``split``: the same seed picks
        the same examples, and as the dataset grows an example leaves the sample only for a
        new one that hashes lower.
        """
        n = _count(n, "sample")
        _check_seed(seed, "sample")
        chosen = {e.id for e in sorted(self.examples, key=lambda e: _unit_interval(seed, e.id))[:n]}
        return self._derived([e for e in self.examples if e.id in chosen])

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
        return self._derived([e for i, e in enumerate(self.examples) if i in kept])

    def split(
        self,
        fraction: float,
        seed: int = 0,
        *,
        stratify_by: str | Callable[[Example], Any] | None = None,
    ) -> tuple[Dataset, Dataset]:
        """Split into (train, validation), ``fraction`` of the examples going to train.

        Membership comes from a hash of ``seed`` and each example's id, so a split is
        deterministic, the two parts are disjoint and cover every example, and an example keeps
        its side when the dataset grows. The sizes are therefore close to, not exactly,
        ``fraction`` of the whole on small datasets.

        ``stratify_by`` (a function of an Example, or the name of one of its fields, such as
        ``"completion"`` for a classifier's labels) splits each group in ``fraction`` on its
        own: walking a group in dataset order, the hash decides unless following it would put
        the group more than one example off ``fraction``. Every group is then split within one
        example of ``fraction``, and an example keeps its side as later calls join the dataset.
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
        key = _group_key(stratify_by)
        # per group: (examples seen, examples sent to train)
        groups: dict[Any, list[int]] = {}
        train: list[Example] = []
        val: list[Example] = []
        for example in self.examples:
            to_train = _unit_interval(seed, example.id) < fraction
            if key is not None:
                counts = groups.setdefault(key(example), [0, 0])
                counts[0] += 1
                target = fraction * counts[0]
                if to_train and counts[1] + 1 - target >= 1:
                    to_train = False
                elif not to_train and target - counts[1] >= 1:
                    to_train = True
                counts[1] += to_train
            (train if to_train else val).append(example)
        return self._derived(train, f"{self.name}[train]"), self._derived(val, f"{self.name}[val]")

    def rerender(self, prompt: Prompt) -> Dataset:
        """The examples with their input messages rendered afresh from ``prompt`` with the
        variables each call was recorded with; the completions stay. Every example must come
        from a call made with ``Prompt.messages()`` (choose them with
        ``get_dataset(name, prompt=...)``)."""
        if not isinstance(prompt, Prompt):
            raise ConfigurationError(f"rerender() takes a Prompt, got {prompt!r}")
        plain = [e.id for e in self.examples if e.prompt_variables is None]
        if plain:
            raise ConfigurationError(
                f"{len(plain)} of the {len(self)} examples were not rendered from a Prompt "
                f"(e.g. {plain[0]}); select those that were with get_dataset(name, prompt=...)"
            )
        examples = []
        for example in self.examples:
            assert example.prompt_variables is not None
            try:
                messages = prompt.messages(**example.prompt_variables)
            except ConfigurationError as exc:
                raise ConfigurationError(
                    f"example {example.id} was recorded with the variables "
                    f"{sorted(example.prompt_variables)}: {exc}"
                ) from None
            examples.append(
                dataclasses.replace(
                    example,
                    messages=list(messages),
                    prompt_name=prompt.name,
                    prompt_version=prompt.version,
                )
            )
        return self._derived(examples)

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

    def to_jsonl(
        self,
        path: str | os.PathLike[str],
        *,
        history_weight: int | None = None,
        rationale: bool = True,
    ) -> Export:
        """Write the examples in OpenAI's chat fine-tuning format, one per line.

        ``history_weight=0`` trains on each completion only, not on the assistant turns of
        the conversation before it; ``rationale=False`` on a chain-of-thought completion's
        final answer only (see ``Example.to_openai``). The file appears whole or not
        at all (written beside, then renamed into place), and only once its snapshot is
        recorded in the store.
        """
        if history_weight not in (None, 0, 1) or isinstance(history_weight, bool):
            raise ConfigurationError(f"history_weight is 0 or 1, got {history_weight!r}")
        return self._export(
            "openai_chat",
            path,
            lambda tmp: write_lines(tmp, (e.to_openai(history_weight, rationale) for e in self)),
        )

    def to_parquet(self, path: str | os.PathLike[str]) -> Export:
        """Write the examples as a Parquet table (see ``to_arrow`` for the columns)."""
        return self._export("parquet", path, lambda tmp: self._copy(tmp, "PARQUET"))

    def to_csv(self, path: str | os.PathLike[str]) -> Export:
        """Write the examples as CSV with a header (see ``to_arrow`` for the columns)."""
        return self._export("csv", path, lambda tmp: self._copy(tmp, "CSV, HEADER"))

    def to_arrow(self) -> Any:
        """The examples as a ``pyarrow.Table``: id, dataset, model, created_at, and messages,
        completion and tools as JSON text (content may be a string or a list of parts, which
        one column type cannot hold). Needs pyarrow."""
        # to_arrow_table in DuckDB 1.4 and later (where arrow() became a batch reader)
        return self._relation(
            lambda rel: (getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table)(),
            "pyarrow",
            "arrow",
        )

    def to_pandas(self) -> Any:
        """The examples as a ``pandas.DataFrame``, columns as ``to_arrow``. Needs pandas."""
        return self._relation(lambda rel: rel.df(), "pandas", "pandas")

    def to_polars(self) -> Any:
        """The examples as a ``polars.DataFrame``, columns as ``to_arrow``. Needs polars."""
        return self._relation(lambda rel: rel.pl(), "polars", "polars")

    def to_hf(self) -> Any:
        """The examples as a Hugging Face ``datasets.Dataset`` with a ``messages`` column (the
        conversational format TRL's trainers take), converted for HF chat templates by
        ``finetuner_otel._hf`` (text parts as one string, tool-call arguments as objects, images
        as HF image parts), and ``tools`` as JSON text where any example has tools. Needs the
        ``datasets`` package."""
        # --- issue 20: the one OpenAI -> HF conversion lives in finetuner_otel/_hf.py ---
        _require("datasets", "hf")
        from .._hf import hf_dataset, hf_records

        records = [{"messages": [*e.messages, e.completion], "tools": e.tools} for e in self]
        data = hf_dataset(hf_records(records, [e.id for e in self]))
        return data if any(e.tools for e in self) else data.remove_columns("tools")
        # --- end issue 20 ---

    # --- issue 22: train/eval leakage (store/_leakage.py) ---
    def leakage(
        self,
        other: Sequence[Example],
        *,
        near: bool = True,
        threshold: float = 0.7,
        shingle: int = 3,
        num_perm: int = 128,
    ) -> Leakage:
        """The examples of ``other`` (a dataset, a snapshot, a list of examples) whose input is
        also in this one: exact repeats after normalising (NFKC, case, whitespace) and, with
        ``near``, near-duplicates: Jaccard >= ``threshold`` of ``shingle``-word shingles,
        found by MinHash LSH with ``num_perm`` permutations (the ``leakage`` extra). The
        report has the counts, each match with both texts and its similarity, and the method."""
        other_name = other.name if isinstance(other, Dataset) else "examples"
        return find_leakage(
            self.name,
            self.examples,
            other_name,
            list(other),
            near=near,
            threshold=threshold,
            shingle=shingle,
            num_perm=num_perm,
        )

    # --- end issue 22 ---

    # --- the machinery of exports -------------------------------------------------------------

    def _table(self) -> tuple[Any, Path]:
        """An in-memory DuckDB connection with the examples as table ``examples``."""
        import duckdb

        folder = Path(tempfile.mkdtemp(prefix="finetuner-export-"))
        rows = folder / "rows.jsonl"
        write_lines(
            rows,
            (
                {
                    "id": e.id,
                    "dataset": e.dataset,
                    "model": e.model,
                    "created_at": e.created_at.isoformat() if e.created_at else None,
                    "messages": e.messages,
                    "completion": e.completion,
                    "tools": e.tools or None,
                }
                for e in self.examples
            ),
        )
        con = duckdb.connect(":memory:", config={"threads": 1})
        con.execute(
            "CREATE TABLE examples AS SELECT * FROM read_json(?, format = 'newline_delimited', "
            "columns = {id: 'VARCHAR', dataset: 'VARCHAR', model: 'VARCHAR', "
            "created_at: 'TIMESTAMPTZ', messages: 'JSON', completion: 'JSON', tools: 'JSON'})",
            [str(rows)],
        )
        return con, folder

    def _copy(self, target: Path, options: str) -> None:
        con, folder = self._table()
        try:
            con.execute(f"COPY examples TO '{_sql_path(target)}' (FORMAT {options})")
        finally:
            con.close()
            shutil.rmtree(folder, ignore_errors=True)

    def _relation(self, convert: Callable[[Any], Any], module: str, extra: str) -> Any:
        _require(module, extra)
        con, folder = self._table()
        try:
            return convert(con.table("examples"))
        finally:
            con.close()
            shutil.rmtree(folder, ignore_errors=True)

    def _export(
        self, kind: str, path: str | os.PathLike[str], write: Callable[[Path], None]
    ) -> Export:
        def record(sha256: str) -> str | None:
            if self.store is None:
                return None
            return self.store._record_snapshot(
                sha256, self.name, kind, target, [e.id for e in self.examples]
            )

        target = Path(path)
        return publish(target, write, record, len(self.examples))


def _require(module: str, extra: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError:
        raise ConfigurationError(
            f"this needs the {module} package: pip install {module} "
            f"(or pip install 'finetuner-otel[{extra}]')"
        ) from None


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def write_lines(path: Path, records: Iterable[Any]) -> None:
    """JSON records, one a line."""
    with open(path, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(dumps(record))
            fh.write("\n")


def publish(
    target: Path,
    write: Callable[[Path], None],
    record: Callable[[str], str | None],
    count: int,
) -> Export:
    """Write a file beside ``target`` with ``write``, hash it, let ``record`` note the hash
    (the snapshot), then rename it into place: the file appears whole, and only once recorded."""
    if target.is_dir():
        raise ConfigurationError(f"{target} is a directory; give a file path like train.jsonl")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        sha256 = file_sha256(tmp)
        snapshot = record(sha256)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Export.made(target, sha256, count, snapshot)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
