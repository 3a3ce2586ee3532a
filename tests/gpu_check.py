"""The local loop end to end, timed: ``make gpu-check`` (or ``python -m tests.gpu_check``).

Builds a small Llama-architecture model here (no download), captures a few calls through the
instrumented SDK against the local OpenAI server, trains a LoRA adapter for ``--steps`` steps
with the local trainer, serves it (vLLM where it runs, transformers otherwise), runs an eval
of the base and the tuned model on the held-out calls, and prints seconds per training step,
training tokens per second and the served model's tokens per second. On a GPU when torch sees
one; on the CPU otherwise (slowly, with the default sizes a minute or two).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import finetuner_otel
from finetuner_otel.eval import ExactMatch
from finetuner_otel.finetune import Finetuner
from finetuner_otel.testing import OpenAIServer, Reply

try:
    from ._tiny_model import build_tiny_model
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).parent))
    from _tiny_model import build_tiny_model  # type: ignore[no-redef]

TOPICS = ("food", "travel", "tech")
WORDS = {
    "food": ("pizza", "pasta", "sushi", "curry", "bread", "salad"),
    "travel": ("flights", "hotels", "trains", "beaches", "visas", "cruises"),
    "tech": ("laptops", "drivers", "routers", "phones", "chargers", "cables"),
}


def _queries() -> list[tuple[str, str]]:
    return [(f"tell me about {w} {i}", t) for i in range(4) for t in TOPICS for w in WORDS[t]]


def _capture(db: Path) -> finetuner_otel.Store:
    """Capture one call per query through the instrumented SDK; the store."""
    handle = finetuner_otel.instrument(db)
    try:
        with OpenAIServer() as server:
            client = server.client()
            for query, topic in _queries():
                server.enqueue(Reply(topic))
                client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[
                        {"role": "system", "content": "Name the topic: food, travel or tech."},
                        {"role": "user", "content": query},
                    ],
                    dataset_name="topics",
                )
        handle.flush()
        return handle.open_store()
    finally:
        handle.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps")
    parser.add_argument("--hidden", type=int, default=256, help="the model's hidden size")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--keep", help="a folder to keep the model, store and job in")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    folder = Path(args.keep or tempfile.mkdtemp(prefix="finetuner-gpu-check-"))
    print(f"device: {device}; working in {folder}", flush=True)
    texts = [f"Name the topic: food, travel or tech. {q} {t}" for q, t in _queries()]
    model = build_tiny_model(folder / "model", texts, hidden=args.hidden, layers=args.layers)
    store = _capture(folder / "finetuner.duckdb")
    train, val = store.get_dataset("topics").split(0.8, seed=0)
    ft = Finetuner.for_local(folder / "models", store=store)
    job = ft.start_job(
        str(model),
        ft.upload_dataset(train),
        max_steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=5e-3,
        lora_r=16,
        lora_alpha=32,
    )
    job.wait(poll=0.5, progress=sys.stderr)
    done = [e.data for e in job.events() if e.data.get("tokens_per_second")]
    seconds = float(done[0]["seconds"]) if done else float("nan")
    print(f"train: {args.steps} steps of {args.batch_size} on {done[0]['device'] if done else '?'}")
    print(f"train: {seconds / args.steps:.3f} s/step, {done[0]['tokens_per_second']:.0f} tokens/s")
    started = time.perf_counter()
    with job.serve(max_new_tokens=16) as served:
        startup = time.perf_counter() - started
        print(f"serve: {type(served).__name__} at {served.url}, up in {startup:.1f}s")
        evaluator = ExactMatch(served.client(), store=store, progress=False)
        base = evaluator.run(served.base_model, val, temperature=0)
        tuned = evaluator.run(served.model, val, temperature=0)
        stats = getattr(served, "stats", None)
    if stats is not None and stats.tokens_per_second:
        print(
            f"serve: {stats.requests} requests, {stats.completion_tokens} tokens, "
            f"{stats.tokens_per_second:.0f} tokens/s"
        )
    print(f"eval: base {base.accuracy:.2f}, tuned {tuned.accuracy:.2f} on {len(val)} examples")
    print(
        json.dumps(
            {
                "device": device,
                "s_per_step": seconds / args.steps,
                "train_tokens_per_s": done[0]["tokens_per_second"] if done else None,
                "serve_tokens_per_s": stats.tokens_per_second if stats else None,
                "base_accuracy": base.accuracy,
                "tuned_accuracy": tuned.accuracy,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
