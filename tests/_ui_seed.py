"""A store with something on every page of ``finetuner ui``, made through the real parts: calls
captured by instrument() from the real SDK talking to the local server, two eval runs, and a
fine-tuning job on the local server's fine-tuning API. Used by tests/test_ui.py and by
tests/ui_screenshots.py (the pictures in docs/)."""

from __future__ import annotations

import base64
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tiktoken

import finetuner_otel
from finetuner_otel import Prompt
from finetuner_otel.eval import ExactMatch
from finetuner_otel.finetune import Finetuner
from finetuner_otel.testing import ErrorReply, OpenAIServer, RecordedRequest, Reply, ToolCall

# One token per byte: token counts on the validation page with no download.
BYTES = tiktoken.Encoding(
    name="bytes",
    pat_str=r"[\s\S]",
    mergeable_ranks={bytes([i]): i for i in range(256)},
    special_tokens={},
)
DATASET = "support"
XSS = '<script>document.title="pwned"</script><img src=x onerror="document.title=\'pwned\'">'
TICKETS = [
    ("My parcel arrived with a crushed box.", "shipping_damage"),
    ("I was charged twice for one order.", "billing"),
    ("How do I reset my password?", "account"),
    ("The courier never showed up.", "shipping_delay"),
    ("Can I get a refund for a late delivery?", "billing"),
    ("The app logs me out every hour.", "account"),
    ("Box was soaked and the book ruined.", "shipping_damage"),
    ("Where is my order? It is a week late.", "shipping_delay"),
    ("Please update my card details.", "billing"),
    ("I cannot change my email address.", "account"),
]
PROMPT = Prompt(
    "ticket-triage",
    "Classify the support ticket as shipping_damage, shipping_delay, billing or account.\n"
    "Ticket: {{ticket}}",
)


@dataclass
class Seeded:
    db: Path
    xss_call: str
    tool_call: str
    image_call: str
    error_call: str
    baseline_run: str
    candidate_run: str
    job_id: str


def png(width: int = 48, height: int = 32) -> bytes:
    """A small gradient PNG, made here (no image library)."""
    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in (x * 5 % 256, y * 8 % 256, 180))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _id_of(store: finetuner_otel.Store, where: str) -> str:
    rows = store.sql(f"SELECT id FROM calls WHERE dataset = '{DATASET}' AND {where}").rows
    assert len(rows) == 1, rows
    return str(rows[0][0])


def seed(db: Path, server: OpenAIServer) -> Seeded:
    handle = finetuner_otel.instrument(db)
    client = server.client(max_retries=0)
    try:
        for i, (ticket, label) in enumerate(TICKETS):
            model = "gpt-4o-mini" if i % 2 == 0 else "gpt-4.1-nano"
            server.enqueue(Reply(label))
            if i < 6:  # rendered from a versioned prompt
                messages = PROMPT.messages(ticket=ticket)
            else:
                messages = [
                    {"role": "system", "content": "Classify the support ticket."},
                    {"role": "user", "content": ticket},
                ]
            client.chat.completions.create(
                model=model, messages=messages, temperature=0, dataset_name=DATASET
            )
        server.enqueue(Reply(XSS))
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Say something <b>bold</b> & risky"}],
            dataset_name=DATASET,
        )
        server.enqueue(
            Reply(None, tool_calls=[ToolCall("lookup_order", '{"order_id": "A-1042"}', "call_1")])
        )
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Where is order A-1042?"}],
            tools=[
                {
                    "type": "function",
                    "function": {
                        "name": "lookup_order",
                        "description": "Find an order by its id",
                        "parameters": {
                            "type": "object",
                            "properties": {"order_id": {"type": "string"}},
                        },
                    },
                }
            ],
            dataset_name=DATASET,
        )
        server.enqueue(Reply("shipping_damage"))
        image = "data:image/png;base64," + base64.b64encode(png()).decode()
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is wrong with this parcel?"},
                        {"type": "image_url", "image_url": {"url": image}},
                    ],
                }
            ],
            dataset_name=DATASET,
        )
        server.enqueue(ErrorReply(400, "Invalid value for 'temperature'"))
        try:
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "This one fails"}],
                temperature=9,
                dataset_name=DATASET,
            )
        except Exception as exc:  # the SDK's own error, as without us
            assert type(exc).__name__ == "BadRequestError"
        store = handle.open_store()
    finally:
        handle.shutdown()

    xss = _id_of(store, "completion->>'content' LIKE '<script>%'")
    tool = _id_of(store, "json_array_length(completion->'tool_calls') = 1")
    image_call = _id_of(store, "CAST(messages AS VARCHAR) LIKE '%image_url%'")
    error = _id_of(store, "status = 'error'")

    # Two eval runs on the labelled tickets: the candidate fixes two of the baseline's errors.
    examples = store.get_dataset(DATASET).filter(
        lambda e: any(ticket in str(e.messages) for ticket, _ in TICKETS)
    )
    assert len(examples) == len(TICKETS)
    wrong = {"base": {1, 3, 4}, "tuned": {4}}

    def answer(request: RecordedRequest) -> Reply:
        body = request.json
        text = str(body["messages"][-1]["content"])
        position = next(i for i, (ticket, _) in enumerate(TICKETS) if ticket in text)
        label = TICKETS[position][1]
        return Reply("other" if position in wrong[body["model"]] else label)

    server.responder = answer
    runs = [
        ExactMatch(server.client(max_retries=0), store=db, progress=False).run(model, examples)
        for model in ("base", "tuned")
    ]

    ft = Finetuner.for_openai(client=server.client(max_retries=0), store=store)
    job = ft.start_job("gpt-4o-mini-2024-07-18", ft.upload_dataset(examples), suffix="triage")
    job.wait(poll=0, progress=False, sleep=lambda _: None)
    return Seeded(db, xss, tool, image_call, error, runs[0].run_id, runs[1].run_id, str(job.id))


class Served:
    """The app in a uvicorn server on a free port, in a thread of the test process."""

    def __init__(self, db: Path, **options: Any) -> None:
        import uvicorn

        from finetuner_otel.ui import create_app

        options.setdefault("encoding", BYTES)  # token counts with no download
        app = create_app(db, **options)
        host = options.get("host", "127.0.0.1")
        self.server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=0, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the app did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
