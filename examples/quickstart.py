"""finetuner-otel quickstart: capture OpenAI calls, then build a fine-tuning dataset from them.

With no OPENAI_API_KEY set, this starts finetuner-otel's local OpenAI-compatible server on
127.0.0.1 and says so: no network, no key, no cost. With OPENAI_API_KEY (and optionally
OPENAI_BASE_URL) set, the same code calls the real endpoint.

    python examples/quickstart.py            # store: ./finetuner.duckdb (or FINETUNER_DB)
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import openai

import finetuner_otel
from finetuner_otel.testing import OpenAIServer, RecordedRequest, Reply

QUERIES = {
    "cheap flights to lisbon": "travel",
    "best pizza dough recipe": "food",
    "python asyncio tutorial": "tech",
    "hotels near the louvre": "travel",
    "how long to boil an egg": "food",
    "rust borrow checker explained": "tech",
    "train from paris to berlin": "travel",
    "vegan lasagna": "food",
    "duckdb vs sqlite": "tech",
    "weekend in kyoto": "travel",
}
SYSTEM = "Classify the search query as travel, food or tech. Answer with the label only."


def scripted_classifier(request: RecordedRequest) -> Reply:
    """What the local server answers: the label of the query in the last user message."""
    query = request.json["messages"][-1]["content"]
    return Reply(QUERIES.get(query, "tech"))


def main() -> None:
    handle = finetuner_otel.instrument()  # one line: every chat call is now captured
    print(f"Capturing into {handle.db_path}")

    with contextlib.ExitStack() as stack:
        if os.environ.get("OPENAI_API_KEY"):
            client = openai.OpenAI()
            print("Using the OpenAI API (OPENAI_API_KEY is set).")
        else:
            server = stack.enter_context(OpenAIServer(scripted_classifier))
            client = server.client()
            print(f"No OPENAI_API_KEY: using the local OpenAI-compatible server at {server.url}")

        queries = list(QUERIES)
        for query in queries[:5]:  # tag a call with the dataset_name keyword...
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": query},
                ],
                temperature=0,
                dataset_name="search_classifier",
            )
        with finetuner_otel.dataset("search_classifier"):  # ...or a whole block of code
            for query in queries[5:]:
                stream = client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[
                        {"role": "system", "content": SYSTEM},
                        {"role": "user", "content": query},
                    ],
                    temperature=0,
                    stream=True,
                )
                for _ in stream:
                    pass

    store = finetuner_otel.open_store()
    print("\nDatasets:")
    for summary in store.list_datasets():
        print(f"  {summary.name}: {summary.examples} examples ({summary.calls} calls)")

    dataset = store.get_dataset("search_classifier")
    train, val = dataset.split(0.8, seed=0)
    out = Path("finetuner-demo")
    exports = [train.to_jsonl(out / "train.jsonl"), val.to_jsonl(out / "val.jsonl")]
    print(f"\nSplit {len(dataset)} examples into {len(train)} train / {len(val)} validation:")
    for export in exports:  # each export is recorded in the store as a snapshot
        print(f"  {export} ({export.examples} examples, snapshot {export.sha256[:12]})")

    print("\nPlain SQL over the store:")
    result = store.sql(
        "SELECT dataset, request_model, count(*) AS calls, sum(input_tokens) AS input_tokens "
        "FROM calls GROUP BY ALL ORDER BY dataset"
    )
    print("  " + " | ".join(result.columns))
    for row in result:
        print("  " + " | ".join(str(v) for v in row))
    print("\nFirst training example:")
    print("  " + (out / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])


if __name__ == "__main__":
    main()
