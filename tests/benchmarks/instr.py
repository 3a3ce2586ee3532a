"""Per-call cost in instructions, counted by callgrind: ``make bench-instr``.

Time on a shared 2-core machine drifts by 2x; instruction counts do not. Every case runs in a
process of its own under ``valgrind --tool=callgrind`` (every thread of it counted, children not
traced), on the in-process HTTP transport of ``peers.py``, content capture on:

- ``bare``: the openai SDK alone;
- ``floor``: one SDK span around the bare call with our GenAI attributes (computed once,
  beforehand) and two JSON dumps (the input and output messages, per call), no instrumentation:
  what any instrumentation built on the OTel SDK pays;
- ``finetuner-otel``: our ``OpenAIInstrumentor`` alone, the spans dropped;
- ``finetuner-otel + store``: ``finetuner_otel.instrument()``: export and spool in the app, the
  ingest in its helper process (``FINETUNER_INGEST=process``, the default). That process runs
  under callgrind too (``--trace-children=yes``) and is counted apart: it has no client
  requests, so its cost per call is the difference of its whole-life counts in two runs of the
  case, the second making N2 - N1 more calls in each mode's second count (the same flushes, the
  same start-up), divided by the extra calls of all modes together;
- ``finetuner-otel + store (thread ingest)``: the same with ``FINETUNER_INGEST=thread``: export,
  spool and ingest all in the app;
- ``finetuner-otel + shadow``: ours alone with a shadow registered that samples none of the
  calls (``shadow(..., sample=0)``): what a call not sampled pays for shadowing;
- the peers that are installed: ``contrib`` (openai-v2), ``openllmetry``, ``openinference``.

Each span processor is a BatchSpanProcessor (``floor`` and the peers: one whose exporter drops the
spans) batching by count: ``OTEL_BSP_SCHEDULE_DELAY`` very large and
``OTEL_BSP_MAX_EXPORT_BATCH_SIZE=32``; the store's processor has no queue (each span encoded as it
ends, each 256 KB written as it fills), its writer thread and its ingest wait
(``FINETUNER_INGEST_INTERVAL`` very large) for the flush, so that no timer, and so not valgrind's
50x slowdown, decides how much work a call causes. For each mode (sync, sync-stream, async,
async-stream), after a warm-up (and ``gc.freeze()``: a full collection of the heap then never falls
in one count by chance): callgrind's counters are zeroed, N1 calls are made and flushed (every span
exported, and ingested for the store) and the counters dumped; then N2 calls, flushed and dumped. A
call costs (Ir(N2) - Ir(N1)) / (N2 - N1): the fixed costs of a flush cancel out. The dumps come from
callgrind's client requests (``CALLGRIND_ZERO_STATS``, ``CALLGRIND_DUMP_STATS_AT``), made through a
tiny C library compiled on the spot (gcc and Debian's ``valgrind`` package, which ships
``valgrind/callgrind.h``). The dumps hold per-function costs too: ``callgrind_annotate`` on one
(``--keep DIR``) is the profile.

    python tests/benchmarks/instr.py [--n1 16] [--n2 80] [--json docs/performance-instr.json]
        [--page docs/performance.md] [--cases bare,floor,...] [--modes sync,...] [--keep DIR]
        [--merge]  (--merge: keep the other cases' counts already in the --json file)
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))

from peers import MODES, PROMPT, _clients, available  # noqa: E402

CASES = [
    "bare",
    "floor",
    "finetuner-otel",
    "finetuner-otel + store",
    "finetuner-otel + store (thread ingest)",
    "finetuner-otel + shadow",
    "contrib",
    "openllmetry",
    "openinference",
]
# Batching by count, never by timer (see the module docstring).
ENV = {
    "OTEL_BSP_SCHEDULE_DELAY": str(10**9),  # ms: 11 days
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "32",
    "FINETUNER_INGEST_INTERVAL": str(10**9),
    "PYTHONHASHSEED": "0",  # the same dict and set layouts in every run
}
STORE_CASES = {
    "finetuner-otel + store": "process",
    "finetuner-otel + store (thread ingest)": "thread",
}
HELPER_MODULE = "finetuner_otel.exporters._ingester"
_CLIENT_REQUESTS = r"""
#include <valgrind/callgrind.h>
void bench_zero(void) { CALLGRIND_ZERO_STATS; }
void bench_dump(const char *name) { CALLGRIND_DUMP_STATS_AT(name); }
"""


def _build_helper(directory: Path) -> Path:
    """The shared library that makes callgrind's client requests."""
    if shutil.which("gcc") is None or not Path("/usr/include/valgrind/callgrind.h").exists():
        sys.exit(
            "bench-instr needs valgrind and gcc: apt-get install -y valgrind gcc "
            "(valgrind ships valgrind/callgrind.h)"
        )
    source, library = directory / "requests.c", directory / "requests.so"
    source.write_text(_CLIENT_REQUESTS)
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", library, source], check=True)
    return library


# --- one case, in the process under callgrind ------------------------------------------------


def _drop_provider() -> Any:
    """A tracer provider whose BatchSpanProcessor drops the spans (as in peers.py)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    return provider


def _floor_span(
    provider: Any, client: Any, messages: list[dict[str, str]]
) -> tuple[Callable[[], Any], Callable[[Any], None]]:
    """The floor's span around one call, as (start, end): an SDK span with our attributes,
    the messages dumped per call."""
    from opentelemetry.trace import SpanKind

    from finetuner_otel import _semconv as sc
    from finetuner_otel.instrumentation import _content
    from finetuner_otel.instrumentation._options import CaptureOptions

    options = CaptureOptions()
    tracer = provider.get_tracer("floor")
    request = {"model": "gpt-4o-mini", "messages": messages, "temperature": 0}
    request_attrs = _content.request_attributes(request, client.chat.completions, options)
    response = client.chat.completions.create(**request)
    response_attrs = _content.response_attributes(response, options)
    inputs = json.loads(request_attrs.pop(sc.INPUT_MESSAGES))
    outputs = json.loads(response_attrs.pop(sc.OUTPUT_MESSAGES))
    request_attrs[sc.DATASET] = "default"

    def start() -> Any:
        span = tracer.start_span("chat gpt-4o-mini", kind=SpanKind.CLIENT, attributes=request_attrs)
        span.set_attribute(sc.INPUT_MESSAGES, json.dumps(inputs))
        return span

    def end(span: Any) -> None:
        span.set_attributes(response_attrs)
        span.set_attribute(sc.OUTPUT_MESSAGES, json.dumps(outputs))
        span.end()

    return start, end


def _set_up(case: str, tmp: str, client: Any, messages: list[dict[str, str]]) -> tuple[Any, Any]:
    """The case's flush and, for ``floor``, its span around each call (start, end)."""
    if case == "bare":
        return (lambda: True), None
    if case in STORE_CASES:
        import finetuner_otel

        os.environ["FINETUNER_INGEST"] = STORE_CASES[case]
        handle = finetuner_otel.instrument(os.path.join(tmp, "bench.duckdb"))
        # A helper starting under callgrind takes a while: every flush waits for its answer.
        return (lambda: handle.flush(timeout=3600.0)), None
    if case in ("floor", "finetuner-otel"):
        provider = _drop_provider()
        if case == "floor":
            return provider.force_flush, _floor_span(provider, client, messages)
        from finetuner_otel.instrumentation import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider)
        return provider.force_flush, None
    if case == "finetuner-otel + shadow":  # a shadow registered that samples none of them:
        import finetuner_otel  # what every call not sampled pays (issue 24)
        from finetuner_otel.instrumentation import OpenAIInstrumentor

        provider = _drop_provider()
        OpenAIInstrumentor().instrument(tracer_provider=provider)
        finetuner_otel.shadow("candidate", sample=0.0)
        return provider.force_flush, None
    from peers import _instrument

    provider, _ = _instrument(case, tmp)
    return provider.force_flush, None


def child(case: str, modes: list[str], n1: int, n2: int, warmup: int, helper: str) -> None:
    requests = ctypes.CDLL(helper)
    requests.bench_dump.argtypes = [ctypes.c_char_p]
    sync, asynchronous = _clients()
    messages = [
        {"role": "system", "content": "You classify support tickets."},
        {"role": "user", "content": PROMPT},
    ]
    with tempfile.TemporaryDirectory() as tmp:
        flush, around = _set_up(case, tmp, sync, messages)

        def one_sync(stream: bool) -> None:
            if not stream:
                sync.chat.completions.create(model="gpt-4o-mini", messages=messages, temperature=0)
                return
            for _ in sync.chat.completions.create(
                model="gpt-4o-mini", messages=messages, stream=True
            ):
                pass

        async def one_async(stream: bool) -> None:
            if not stream:
                await asynchronous.chat.completions.create(
                    model="gpt-4o-mini", messages=messages, temperature=0
                )
                return
            result = await asynchronous.chat.completions.create(
                model="gpt-4o-mini", messages=messages, stream=True
            )
            async for _ in result:
                pass

        async def calls_async(mode: str, n: int) -> None:
            stream = mode.endswith("stream")
            for _ in range(n):
                if around is None:
                    await one_async(stream)
                else:
                    span = around[0]()
                    await one_async(stream)
                    around[1](span)

        def calls(mode: str, n: int) -> None:
            if mode.startswith("async"):
                asyncio.run(calls_async(mode, n))
                return
            stream = mode.endswith("stream")
            for _ in range(n):
                if around is None:
                    one_sync(stream)
                else:
                    span = around[0]()
                    one_sync(stream)
                    around[1](span)

        for mode in modes:
            calls(mode, warmup)
            assert flush()
            # A full collection of the whole heap falls in one count or the other by chance
            # (tens of millions of instructions, each mode and case at another moment): what
            # the warm-up left is frozen out of them, the young collections still count.
            gc.collect()
            gc.freeze()
            requests.bench_zero()
            for n in (n1, n2):
                calls(mode, n)
                assert flush()
                requests.bench_dump(f"{case}|{mode}|{n}".encode())


# --- the parent: one callgrind process per case ----------------------------------------------


def _run_case(
    case: str, args: argparse.Namespace, out: Path, helper: Path, n2: int | None = None
) -> dict[str, Any]:
    """One case under callgrind; its Ir totals per mode and call count, and (``helper``) the
    whole-life total of its ingest helper process, if it has one."""
    n2 = n2 or args.n2
    base = out / (re.sub(r"[^a-z]+", "-", case) + str(n2))
    children = STORE_CASES.get(case) == "process"
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--trace-children={'yes' if children else 'no'}",
        f"--callgrind-out-file={base}.%p.out",
        sys.executable,
        str(HERE),
        "--child",
        case,
        ",".join(args.modes),
        str(args.n1),
        str(n2),
        str(args.warmup),
        str(helper),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACELOOP"))}
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env={**env, **ENV})
    if done.returncode != 0:
        raise RuntimeError(f"{case} failed under callgrind:\n{done.stderr[-4000:]}")
    totals: dict[str, Any] = {}
    for dump in sorted(out.glob(f"{base.name}.*.out*")):
        text = dump.read_text(errors="replace")
        trigger = re.search(r"^desc: Trigger: Client Request: (.*)$", text, re.M)
        total = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
        cmd = re.search(r"^cmd: (.*)$", text, re.M)
        if total is None:
            continue
        if cmd is not None and HELPER_MODULE in cmd.group(1):
            totals["helper"] = totals.get("helper", 0) + int(total.group(1))
        elif trigger is not None:
            _, mode, n = trigger.group(1).split("|")
            totals.setdefault(mode, {})[n] = int(total.group(1))
    print(f"  {case:40} {time.monotonic() - started:6.0f} s under callgrind", flush=True)
    return totals


def _helper_per_call(case: str, args: argparse.Namespace, out: Path, lib: Path) -> dict[str, Any]:
    """The case twice, the second with N2 - N1 more calls in each mode's second count; its
    app counts (from the first) and its helper's cost per call (see the module docstring)."""
    extra = args.n2 - args.n1
    first = _run_case(case, args, out, lib)
    second = _run_case(case, args, out, lib, n2=args.n2 + extra)
    if "helper" not in first or "helper" not in second:
        raise RuntimeError(f"{case}: no ingest helper process was counted")
    helper = {
        "totals": [first.pop("helper"), second.pop("helper")],
        "extra_calls": extra * len(args.modes),
    }
    helper["per_call"] = (helper["totals"][1] - helper["totals"][0]) / helper["extra_calls"]
    return {**first, "helper": helper}


def _counts(case: str, args: argparse.Namespace, out: Path, lib: Path) -> dict[str, Any]:
    if STORE_CASES.get(case) == "process":
        return _helper_per_call(case, args, out, lib)
    return _run_case(case, args, out, lib)


def _merged(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The new counts over the old file's (same N1, N2 and settings), the cases in CASES order;
    ``measured`` says which run each case's counts come from."""
    if (old["n1"], old["n2"], old["env"]) != (new["n1"], new["n2"], new["env"]):
        sys.exit("--merge: the --json file was counted with other N1, N2 or settings")
    ir = {**old["ir"], **new["ir"]}
    measured = {**{c: "an earlier run" for c in old["ir"]}, **old.get("measured", {})}
    measured.update(new["measured"])
    cases = [c for c in CASES if c in ir]
    return {**new, "cases": cases, "ir": {c: ir[c] for c in cases}, "measured": measured}


def per_call(raw: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Ir per call, (Ir(N2) - Ir(N1)) / (N2 - N1), by mode and case."""
    n1, n2 = raw["n1"], raw["n2"]
    result: dict[str, dict[str, float]] = {}
    for case, by_mode in raw["ir"].items():
        for mode, totals in by_mode.items():
            if mode == "helper":  # counted apart: its cost per call is worked out already
                continue
            result.setdefault(mode, {})[case] = (totals[str(n2)] - totals[str(n1)]) / (n2 - n1)
    return result


def table(raw: dict[str, Any]) -> list[str]:
    """The Markdown table: per mode, the ratio to bare and the Ir per call."""
    costs = per_call(raw)
    modes = [m for m in MODES if m in costs]
    head = " | ".join(f"{m}: / bare (Ir per call)" for m in modes)
    lines = [f"| instrumentation | {head} |", "| --- |" + " ---: |" * len(modes)]
    for case in raw["cases"]:
        cells = []
        for mode in modes:
            cost, bare = costs[mode].get(case), costs[mode].get("bare")
            cells.append("-" if cost is None or not bare else f"{cost / bare:.3f} ({cost:,.0f})")
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
        helper = raw["ir"].get(case, {}).get("helper")
        if helper is not None:  # the same figure in every column: all modes' calls together
            cells = []
            for mode in modes:
                bare = costs[mode].get("bare")
                cost = helper["per_call"]
                cells.append("-" if not bare else f"{cost / bare:.3f} ({cost:,.0f})")
            lines.append(
                f"| {case}: its ingest helper process (all modes) | " + " | ".join(cells) + " |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    # N2 - N1 a multiple of the export batch (32), so that each count pays its share of batches.
    # Counts barely vary from run to run; these keep `make bench-instr` near 10 minutes here.
    parser.add_argument("--n1", type=int, default=16, help="calls of the first count (16)")
    parser.add_argument("--n2", type=int, default=80, help="calls of the second count (80)")
    parser.add_argument("--warmup", type=int, default=10, help="calls before counting (10)")
    parser.add_argument("--cases", help="comma-separated, of: " + ", ".join(CASES))
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="cases at once")
    parser.add_argument("--json", type=Path, help="write the raw counts here")
    parser.add_argument("--page", type=Path, help="re-render this performance page (peers.py)")
    parser.add_argument("--keep", type=Path, help="keep callgrind's dumps in this folder")
    parser.add_argument(
        "--merge", action="store_true", help="keep the --json file's counts of other cases"
    )
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, modes, n1, n2, warmup, helper = args.child
        child(case, modes.split(","), int(n1), int(n2), int(warmup), helper)
        return
    if shutil.which("valgrind") is None:
        sys.exit("bench-instr needs valgrind: apt-get install -y valgrind")
    args.modes = args.modes.split(",")
    wanted = args.cases.split(",") if args.cases else CASES
    cases = [c for c in wanted if available(c)]
    missing = [c for c in wanted if c not in cases]
    print(
        f"Python {platform.python_version()} on {os.cpu_count()} CPUs; callgrind, "
        f"N1={args.n1}, N2={args.n2} calls per mode; {', '.join(args.modes)}"
    )
    if missing:
        print(f"  not installed, left out: {', '.join(missing)} (pip install -e '.[bench]')")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        helper = _build_helper(Path(tmp))
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            runs = list(pool.map(lambda c: _counts(c, args, out, helper), cases))
    raw = {
        "n1": args.n1,
        "n2": args.n2,
        "env": ENV,
        "python": platform.python_version(),
        "cases": cases,
        "ir": dict(zip(cases, runs, strict=True)),
        "measured": {case: time.strftime("%Y-%m-%d") for case in cases},
    }
    if args.merge and args.json and args.json.exists():
        raw = _merged(json.loads(args.json.read_text()), raw)
    print("\n".join(table(raw)))
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1) + "\n")
    if args.page:
        from peers import rerender

        json_path = args.json or args.page.with_name(args.page.stem + "-instr.json")
        if not args.json:
            json_path.write_text(json.dumps(raw, indent=1) + "\n")
        rerender(args.page)
        print(f"wrote {json_path} and {args.page}")


if __name__ == "__main__":
    main()
