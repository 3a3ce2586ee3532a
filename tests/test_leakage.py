"""Train/eval leakage: planted exact repeats (case, whitespace, Unicode forms) and
near-duplicates (the same ticket with another greeting) are found, genuinely different examples
are not; between datasets and snapshots, from the CLI, and automatically in Eval.run when the
model is a fine-tuned job whose training snapshot the store knows."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest

from finetuner_otel.cli import main
from finetuner_otel.eval import Eval
from finetuner_otel.finetune import Finetuner
from finetuner_otel.store import Dataset, Example, Store
from finetuner_otel.testing import OpenAIServer

SYSTEM = "You are Acme's support agent. Be brief, be kind, and never promise a refund date."
TICKETS = [
    "my order 4411 arrived broken, the box was crushed and the mug inside is in pieces. "
    "can I get a refund or a replacement sent to the same address please?",
    "I was charged twice for my March subscription, both on the 3rd. Please refund one "
    "of the two payments to my Visa ending 0199.",
    "How do I change the delivery address on an order I placed an hour ago? It has not "
    "shipped yet according to the tracking page.",
    "The app logs me out every time I switch to another app on my phone, and then asks "
    "for the two-factor code again. This started after the last update.",
    "Do you ship to Norway, and if so are customs fees included in the price at checkout "
    "or charged on delivery?",
    "My discount code SPRING20 says it has expired but your email said it is valid until "
    "the end of the month. Can you apply it manually to order 5120?",
]


def _example(i: str, text: str, answer: str = "ok", dataset: str = "d") -> Example:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
    return Example(i, dataset, messages, {"role": "assistant", "content": answer})


def _full_width(text: str) -> str:
    """``text`` in full-width forms (U+FF01...), which NFKC folds back to ASCII."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def _train_and_test() -> tuple[Dataset, Dataset]:
    train = Dataset("train", [_example(f"t{i}", f"Hi there! {t}") for i, t in enumerate(TICKETS)])
    test = Dataset(
        "test",
        [
            # exact, once normalised: case, runs of whitespace, full-width (NFKC) characters
            _example("exact", f"  HI   THERE!\n{TICKETS[1].upper()} "),
            _example("nfkc", f"{_full_width('Hi there!')} {TICKETS[4]}"),
            # near: the same ticket with another greeting and sign-off
            _example("near", f"Good morning, {TICKETS[0]} Thanks, Dana"),
            # different tickets in the same domain and words: must not match
            _example("other1", "My order 4411 arrived late, two weeks after the date you gave."),
            _example("other2", "Can I get a refund for a subscription I never used in March?"),
            _example("other3", "Please change my Visa card on file; the old one expired."),
        ],
    )
    return train, test


def test_exact_and_near_duplicates_are_found_and_different_ones_are_not() -> None:
    train, test = _train_and_test()
    report = train.leakage(test)
    assert {o.other: o.example for o in report.exact} == {"exact": "t1", "nfkc": "t4"}
    [near] = report.near
    assert (near.other, near.example, near.kind) == ("near", "t0", "near")
    assert 0.7 <= near.similarity < 1.0
    assert near.other_text.startswith("Good morning") and near.example_text.startswith("Hi there")
    assert report.leaked == {"exact", "nfkc", "near"} and report.count == 3
    assert (report.examples, report.other_examples) == (6, 6)
    # the similarity used is said
    assert "Jaccard >= 0.7 of 3-word shingles" in report.method
    assert "MinHash LSH (128 permutations" in report.method
    assert "3 of 6 examples of test (50.0%) are in train" in report.summary()
    data = report.to_dict()
    assert data["leaked"] == 3 and data["near"][0]["similarity"] == round(near.similarity, 4)


def test_a_shared_system_prompt_alone_is_not_leakage() -> None:
    long_system = SYSTEM * 20
    a = Dataset("a", [_example("a", "What are your opening hours?")])
    b = Dataset("b", [_example("b", "Is the shop open on Sundays?")])
    a.examples[0].messages[0]["content"] = long_system
    b.examples[0].messages[0]["content"] = long_system
    assert a.leakage(b).count == 0


def test_random_different_texts_never_match() -> None:
    rng = random.Random(7)
    words = [f"w{i}" for i in range(3000)]

    def texts(n: int) -> list[str]:
        return [" ".join(rng.choice(words) for _ in range(30)) for _ in range(n)]

    train = Dataset("train", [_example(f"a{i}", t) for i, t in enumerate(texts(500))])
    test = Dataset("test", [_example(f"b{i}", t) for i, t in enumerate(texts(200))])
    assert train.leakage(test).count == 0


def test_near_duplicates_just_above_the_threshold_are_found() -> None:
    """The LSH bands favour recall: of 100 planted pairs at Jaccard 0.85 or 0.73 (one or two
    of 40 words replaced), beside 300 unrelated texts, every 0.85 pair is found and at most
    one 0.73 pair is missed (proposed with probability 0.997 each; 998 of 1,000 measured)."""
    rng = random.Random(3)
    words = [f"w{i}" for i in range(5000)]
    originals = [[rng.choice(words) for _ in range(40)] for _ in range(400)]
    copies = []
    for i, text in enumerate(originals[:100]):
        changed = list(text)
        for k in range(2 if i % 2 else 1):
            changed[k * 10 + 5] = f"x{i}k{k}"  # spread out: each costs three shingles
        copies.append(" ".join(changed))
    train = Dataset("train", [_example(f"a{i}", " ".join(t)) for i, t in enumerate(originals)])
    test = Dataset("test", [_example(f"b{i}", t) for i, t in enumerate(copies)])
    report = train.leakage(test)
    found = {o.other: o.example for o in report.near}
    assert all(found[o] == f"a{o[1:]}" for o in found)  # each with its own original
    assert {f"b{i}" for i in range(0, 100, 2)} <= set(found)  # every pair at 0.85
    assert len(found) >= 99
    assert 0.7 <= min(o.similarity for o in report.near) < 0.75


def test_threshold_exact_only_and_bad_settings() -> None:
    train, test = _train_and_test()
    exact_only = train.leakage(test, near=False)
    assert exact_only.leaked == {"exact", "nfkc"} and exact_only.near == []
    assert "near-duplicates not checked" in exact_only.method
    assert train.leakage(test, threshold=0.99).leaked == {"exact", "nfkc"}
    for bad in ({"threshold": 0}, {"threshold": 1.5}, {"shingle": 0}, {"num_perm": True}):
        with pytest.raises(ValueError, match=r"threshold|shingle|num_perm"):
            train.leakage(test, **bad)  # type: ignore[arg-type]


def _stored(db: Path) -> Store:
    """A store with "train" (the tickets) and "heldout" (a leak of each kind, and new ones)."""
    store = Store(db)
    train = [
        _example("", f"Hi there! {t}", f"answer {i}").to_openai() for i, t in enumerate(TICKETS)
    ]
    store.add_examples(train, dataset="train")
    _, test = _train_and_test()
    heldout = [e.to_openai() for e in test]
    for record, example in zip(heldout, test, strict=True):
        record["messages"][-1]["content"] = f"echo:{example.id}"
    store.add_examples(heldout, dataset="heldout")
    return store


def test_a_snapshot_against_a_dataset_and_the_cli(tmp_path: Path, db: Path) -> None:
    store = _stored(db)
    export = store.get_dataset("train").to_jsonl(tmp_path / "train.jsonl")
    snapshot = store.get_snapshot(export.sha256)
    assert snapshot.leakage(store.get_dataset("heldout")).count == 3

    out = io.StringIO()
    code = main(["datasets", "leakage", "train", "heldout", "--db", str(db)], out=out)
    text = out.getvalue()
    assert code == 0 and "3 of 6 examples of heldout (50.0%) are in train" in text
    assert "Good morning" in text and "near" in text and "exact" in text
    out = io.StringIO()
    argv = ["datasets", "leakage", export.sha256[:12], "heldout", "--db", str(db), "--json"]
    assert main(argv, out=out) == 0
    data = json.loads(out.getvalue())
    assert data["leaked"] == 3 and len(data["exact"]) == 2 and data["threshold"] == 0.7
    err = io.StringIO()
    assert main(["datasets", "leakage", "train", "nope", "--db", str(db)], err=err) == 1
    assert "nope" in err.getvalue()


class EchoEval(Eval):
    """The local server echoes the question; the held-out targets say which example it is."""

    def compare(self, prediction: object, target: object) -> bool:
        return isinstance(target, str) and target in ("echo:exact", "echo:nfkc", "echo:near")


def test_eval_run_marks_leakage_from_the_fine_tuned_models_training_snapshot(
    tmp_path: Path, db: Path, server: OpenAIServer
) -> None:
    store = _stored(db)
    ft = Finetuner.for_openai(client=server.client(max_retries=0), store=store)
    job = ft.start_job("gpt-4o-mini-2024-07-18", ft.upload_dataset(store.get_dataset("train")))
    job.wait(poll=0, progress=False, sleep=lambda seconds: None)
    model = job.fine_tuned_model
    assert model is not None

    heldout = store.get_dataset("heldout")
    result = EchoEval(server.client(), store=store, progress=False).run(model, heldout)
    by_position = {r.example_id: r.position for r in result.results}
    leaked_positions = sorted(by_position[i] for i in result.leaked)
    assert leaked_positions == [0, 1, 2]  # the exact, nfkc and near examples
    assert result.leakage is not None
    assert result.leakage["training_snapshot"] == store.snapshots("train")[0].id
    assert (result.leakage["exact"], result.leakage["near"]) == (2, 1)
    # the leaked examples are the ones it "got right": without them, nothing is
    assert result.accuracy == pytest.approx(0.5) and result.accuracy_without_leaked == 0.0
    assert "3 examples leaked from training snapshot" in result.summary()
    assert "accuracy without them 0.0% over 3" in result.summary()

    # stored with the run, and in the report
    from finetuner_otel.eval import load_run

    again = load_run(store, result.run_id)
    assert again.leaked == result.leaked and again.params == {}
    report = again.report(tmp_path / "report.html").read_text(encoding="utf-8")
    assert report.count('class="leaked"') == 3 and "Accuracy without them" in report

    # a model whose training data the store does not know: no check, no marks
    base = EchoEval(server.client(), store=store, progress=False).run("gpt-4o-mini", heldout)
    assert base.leakage is None and base.leaked == frozenset()
