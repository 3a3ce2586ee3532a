"""finetuner-otel beside the other OpenAI instrumentations: ``make bench-peers``.

Every case runs in a process of its own, on the same in-process HTTP transport (no network, the
SDK's full request path), with content capture on and the same span processor: a
BatchSpanProcessor whose exporter drops the spans, so that what is measured is each
instrumentation's own cost on the caller and in the export thread. The cases:

- ``bare``: the openai SDK alone;
- ``finetuner-otel``: our ``OpenAIInstrumentor`` (what ``instrument()`` adds on the caller's
  thread; ``finetuner-otel + store`` also runs our DuckDB exporter, for reference, ingesting in
  its helper process (``FINETUNER_INGEST=process``, the default), and ``finetuner-otel + store
  (thread ingest)`` ingesting on a thread of the app (``FINETUNER_INGEST=thread``));
- ``contrib``: ``opentelemetry-instrumentation-openai-v2`` with
  ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=SPAN_ONLY``;
- ``openllmetry``: ``opentelemetry-instrumentation-openai`` (content on by default);
- ``openinference``: ``openinference-instrumentation-openai`` (content on by default).

For sync, sync streaming, async and async streaming calls: the median wall-clock time per call
(and its ratio to ``bare``), the CPU the other threads spent per call (the export thread), and,
in one long sync run per case, the peak RSS (and the ingest helper's own, and its CPU seconds).
Each case is repeated; min/median/max are printed.

    python tests/benchmarks/peers.py [--quick] [--page docs/performance.md] [--cases a,b]
        [--rss-only] [--rss-calls N]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))

from run import (  # noqa: E402
    COMPLETION,
    PROMPT,
    _background_cpu_seconds,
    _child_json,
    _sse_body,
    peak_rss_mb,
)

CASES = [
    "bare",
    "finetuner-otel",
    "contrib",
    "openllmetry",
    "openinference",
    "finetuner-otel + store",
    "finetuner-otel + store (thread ingest)",
]
STORE_CASES = {
    "finetuner-otel + store": "process",
    "finetuner-otel + store (thread ingest)": "thread",
}
MODES = ["sync", "sync-stream", "async", "async-stream"]
_PACKAGES = {
    "contrib": "opentelemetry.instrumentation.openai_v2",
    "openllmetry": "opentelemetry.instrumentation.openai",
    "openinference": "openinference.instrumentation.openai",
}


def available(case: str) -> bool:
    module = _PACKAGES.get(case)
    return module is None or (
        importlib.util.find_spec(module.split(".")[0]) is not None
        and (importlib.util.find_spec(module) is not None)
    )


def _clients() -> tuple[Any, Any]:
    import openai

    try:
        import httpx2 as httpx
    except ImportError:  # SDKs before httpx2
        import httpx  # type: ignore[no-redef]

    body = json.dumps(COMPLETION).encode()
    sse = _sse_body()

    def respond(request: Any) -> Any:
        if b'"stream":true' in request.content.replace(b" ", b""):
            return httpx.Response(200, content=sse, headers={"content-type": "text/event-stream"})
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    async def respond_async(request: Any) -> Any:
        return respond(request)

    sync = openai.OpenAI(
        api_key="sk-bench",
        base_url="http://bench.invalid/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(respond)),
    )
    asynchronous = openai.AsyncOpenAI(
        api_key="sk-bench",
        base_url="http://bench.invalid/v1",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(respond_async)),
    )
    return sync, asynchronous


def _instrument(case: str, tmp: str) -> tuple[Any, Any]:
    """Set the case up; returns its tracer provider and its instrumentor (None for bare).

    Every instrumentor here is a ``BaseInstrumentor``: ``uninstrument()`` takes its wrappers
    off the SDK and ``instrument()`` puts them back, which the paired blocks of ``child`` use.
    """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)
    instrumentor: Any = None
    if case == "finetuner-otel" or case in STORE_CASES:
        from finetuner_otel.instrumentation import OpenAIInstrumentor

        if case in STORE_CASES:
            import finetuner_otel

            os.environ["FINETUNER_INGEST"] = STORE_CASES[case]
            finetuner_otel.instrument(os.path.join(tmp, "bench.duckdb"), tracer_provider=provider)
        instrumentor = OpenAIInstrumentor()
    elif case == "contrib":
        os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "SPAN_ONLY"
        os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = "gen_ai_latest_experimental"
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as Contrib

        instrumentor = Contrib()
    elif case == "openllmetry":
        os.environ["TRACELOOP_TRACE_CONTENT"] = "true"
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor as LLMetry

        instrumentor = LLMetry()
    elif case == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor as OpenInference

        instrumentor = OpenInference()
    if instrumentor is not None and not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider)
    return provider, instrumentor


def _wrapped_methods() -> list[str]:
    """The SDK's chat methods that carry an instrumentation's (wrapt) wrapper now: none after
    every uninstrument(). (The SDK's own decorators set ``__wrapped__`` too: not those.)"""
    import wrapt
    from openai.resources.chat.completions import AsyncCompletions, Completions

    return [
        f"{owner.__name__}.create"
        for owner in (Completions, AsyncCompletions)
        if isinstance(owner.__dict__["create"], wrapt.ObjectProxy)
    ]


BLOCK = 20  # calls per block; instrumented and bare blocks alternate


def child(case: str, mode: str, calls: int, warmup: int, tmp: str) -> None:
    """One case in this process: ``calls`` instrumented calls in blocks of ``BLOCK``, each
    beside a block of as many calls with the instrumentation taken off (``uninstrument()``), in
    alternating order, so both see the same machine state (its speed drifts by up to 2x over
    seconds here). Prints the per-block medians, the export threads' CPU per instrumented
    call, and the peak RSS. ``warmup`` 0: one instrumented run (the memory run)."""
    provider, instrumentor = _instrument(case, tmp)
    sync, asynchronous = _clients()
    messages = [
        {"role": "system", "content": "You classify support tickets."},
        {"role": "user", "content": PROMPT},
    ]

    def one_sync() -> None:
        if mode == "sync":
            sync.chat.completions.create(model="gpt-4o-mini", messages=messages, temperature=0)
        else:
            for _ in sync.chat.completions.create(
                model="gpt-4o-mini", messages=messages, stream=True
            ):
                pass

    async def one_async() -> None:
        if mode == "async":
            await asynchronous.chat.completions.create(
                model="gpt-4o-mini", messages=messages, temperature=0
            )
        else:
            stream = await asynchronous.chat.completions.create(
                model="gpt-4o-mini", messages=messages, stream=True
            )
            async for _ in stream:
                pass

    def switch(on: bool) -> None:
        if instrumentor is None:
            return
        if on:
            instrumentor.instrument(tracer_provider=provider)
        else:
            instrumentor.uninstrument()
            left = _wrapped_methods()
            if left:
                raise RuntimeError(f"{case}: uninstrument() left wrappers on {left}")

    async def timed_async(n: int) -> list[float]:
        times = []
        for _ in range(n):
            start = time.perf_counter()
            await one_async()
            times.append(time.perf_counter() - start)
        return times

    def timed(n: int) -> list[float]:
        if mode.startswith("async"):
            return asyncio.run(timed_async(n))
        times = []
        for _ in range(n):
            start = time.perf_counter()
            one_sync()
            times.append(time.perf_counter() - start)
        return times

    ours: list[float] = []
    bare: list[float] = []
    if warmup == 0:  # the memory run: instrumented only
        ours = [statistics.median(timed(calls))]
        cpu_before = None
    else:
        timed(warmup)
        switch(False)
        timed(warmup)
        switch(True)
        cpu_before = _background_cpu_seconds()
        for block in range(max(1, calls // BLOCK)):
            for instrumented in (True, False) if block % 2 == 0 else (False, True):
                switch(instrumented)
                (ours if instrumented else bare).append(statistics.median(timed(BLOCK)))
        switch(True)
    provider.force_flush()
    helpers = _child_processes()  # the ingest helper's, all ingested now
    cpu_after = _background_cpu_seconds()
    cpu = (
        (cpu_after - cpu_before) / calls
        if cpu_before is not None and cpu_after is not None
        else None
    )
    print(
        json.dumps(
            {
                "median": statistics.median(ours),
                "ratios": [o / b for o, b in zip(ours, bare, strict=False)],
                "cpu_per_call": cpu,
                "peak_rss_mb": peak_rss_mb(),
                "helper_peak_rss_mb": max((h[0] for h in helpers), default=None),
                "helper_cpu_seconds": sum(h[1] for h in helpers) if helpers else None,
            }
        )
    )


def _child_processes() -> list[tuple[float, float]]:
    """(peak RSS MB, CPU seconds) of each child process of this one (an ingest helper), from
    /proc; none where there is no /proc."""
    found = []
    try:
        pids = [
            pid
            for task in Path("/proc/self/task").iterdir()
            for pid in (task / "children").read_text().split()
        ]
    except OSError:
        return []
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        hwm = [line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")]
        ticks = os.sysconf("SC_CLK_TCK")
        found.append((int(hwm[0]) / 1024 if hwm else 0.0, (int(stat[11]) + int(stat[12])) / ticks))
    return found


def _run_child(case: str, mode: str, calls: int, warmup: int, tmp: str) -> dict[str, Any]:
    return _child_json(str(HERE), "--child", case, mode, str(calls), str(warmup), tmp)


def measure(
    calls: int, repeats: int, rss_calls: int, cases: list[str], timing: bool = True
) -> dict[str, Any]:
    import tempfile

    results: dict[str, Any] = {"cases": cases, "timing": {}, "rss": {}, "helper": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in MODES if timing else []:
            for repeat in range(repeats):
                for case in cases:  # interleaved, so drift on the machine hits every case alike
                    r = _run_child(case, mode, calls, min(100, calls), tmp)
                    results["timing"].setdefault(mode, {}).setdefault(case, []).append(r)
                    print(
                        f"  {mode:12} {case:24} run {repeat + 1}: {r['median'] * 1e6:8.1f} µs",
                        flush=True,
                    )
        for case in cases:
            r = _run_child(case, "sync", rss_calls, 0, tmp)
            results["rss"][case] = r["peak_rss_mb"]
            helper = ""
            if r.get("helper_peak_rss_mb") is not None:
                results["helper"][case] = [r["helper_peak_rss_mb"], r["helper_cpu_seconds"]]
                helper = (
                    f"; its ingest helper process: peak RSS {r['helper_peak_rss_mb']:.0f} MB, "
                    f"CPU {r['helper_cpu_seconds']:.1f} s"
                )
            print(
                f"  peak RSS after {rss_calls:,} sync calls, {case}: {r['peak_rss_mb']:.0f} MB"
                + helper,
                flush=True,
            )
    return results


def _ratios(runs: list[dict[str, Any]]) -> list[float]:
    """Every block's ratio (instrumented / bare, paired in the same process) of every run."""
    return [ratio for run in runs for ratio in run["ratios"]] or [1.0]


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| mode | instrumentation | median µs per call | ratio to bare, paired blocks "
        "(min / median / max) | ratio to the bare process | export-thread CPU µs per call "
        "| peak RSS MB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mode, by_case in results["timing"].items():
        bare = [r["median"] for r in by_case["bare"]]
        for case in results["cases"]:
            runs = by_case[case]
            medians = [r["median"] for r in runs]
            ratios = _ratios(runs)
            apart = statistics.median(m / b for m, b in zip(medians, bare, strict=True))
            cpus = [r["cpu_per_call"] for r in runs if r["cpu_per_call"] is not None]
            cpu = f"{statistics.median(cpus) * 1e6:.0f}" if cpus else "-"
            rss = f"{results['rss'].get(case, 0):.0f}" if mode == "sync" else ""
            if mode == "sync" and case in results.get("helper", {}):
                rss += f" (helper {results['helper'][case][0]:.0f})"
            lines.append(
                f"| {mode} | {case} | {statistics.median(medians) * 1e6:.0f} | "
                f"{min(ratios):.3f} / {statistics.median(ratios):.3f} / {max(ratios):.3f} | "
                f"{apart:.3f} | {cpu} | {rss} |"
            )
    return lines


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [c for c in results["cases"] if c != "bare"]
    modes = list(results["timing"])
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=120)
    width = 0.8 / len(cases)
    for i, case in enumerate(cases):
        values = []
        for mode in modes:
            values.append((statistics.median(_ratios(results["timing"][mode][case])) - 1) * 100)
        ax.bar([m + i * width for m in range(len(modes))], values, width, label=case)
    ax.set_xticks([m + width * (len(cases) - 1) / 2 for m in range(len(modes))], modes)
    ax.axhline(5, color="black", linestyle="--", linewidth=1)
    ax.set_ylabel("overhead over the bare SDK, % (median)")
    ax.set_title("Per-call overhead of OpenAI instrumentations, content capture on")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def instruction_section(path: Path) -> list[str]:
    """The page's instruction counts, from what ``instr.py`` wrote beside it (if it did)."""
    counts = path.with_name(path.stem + "-instr.json")
    if not counts.exists():
        return []
    from instr import ENV
    from instr import table as instruction_table

    raw = json.loads(counts.read_text())
    settings = ", ".join(f"`{k}={v}`" for k, v in ENV.items() if k != "PYTHONHASHSEED")
    return [
        "## In instructions",
        "",
        "Generated by `python tests/benchmarks/instr.py --page " + str(path) + "` (`make "
        f"bench-instr`): Python {raw['python']}, under callgrind, every thread of each case's "
        "process counted. Time here drifts by 2x; instruction counts do not. Per call: "
        f"(Ir of {raw['n2']} calls - Ir of {raw['n1']} calls) / {raw['n2'] - raw['n1']}, after a "
        "warm-up whose heap is frozen (`gc.freeze()`: a full collection then never falls in one "
        "count by chance), each count ending in a flush (every span exported; for the store, "
        "spooled and ingested), "
        "so a flush's fixed cost cancels out. The peers' span processors batch by count, not "
        "by timer, and the store's has no queue (each span is encoded as it ends, each 256 KB "
        f"written as it fills) and no timer ({settings}), so valgrind's slowdown does not "
        "decide how much work a call causes. "
        "`floor`: one SDK span around the bare call with our GenAI attributes (computed "
        "beforehand) and two JSON dumps (input and output messages), no instrumentation. "
        "`finetuner-otel`: our instrumentation alone, its spans dropped as the peers' are; "
        "`finetuner-otel + store`: `instrument()`, export, spool and ingest; "
        + _instruction_modes(raw)
        + f" The raw counts are in [{counts.name}]({counts.name}).",
        "",
        *instruction_table(raw),
        "",
    ]


def _instruction_modes(raw: dict[str, Any]) -> str:
    """Where the store cases of ``raw`` ingested, and which run each case's counts are of."""
    if "finetuner-otel + store (thread ingest)" not in raw["cases"]:
        return "the ingest on a thread of the app (these counts predate the helper process)."
    measured = raw.get("measured", {})
    runs = sorted(set(measured.values()))
    dates = "; ".join(
        f"{', '.join(f'`{c}`' for c in raw['cases'] if measured.get(c) == run)}: {run}"
        for run in runs
    )
    return (
        "the app's counts, the ingest in its helper process (the default), whose own cost "
        "per call is the row below it: the helper runs under callgrind too, and its whole-life "
        "counts in two runs, the second with N2 - N1 more calls in each mode, differ by the "
        "cost of those calls (every mode's together, so the same figure in each column); "
        "`(thread ingest)`: export, spool and ingest all in the app (`FINETUNER_INGEST=thread`)."
        + (f" Counted on: {dates}." if len(runs) > 1 else "")
    )


def rerender(path: Path) -> None:
    """Write the page again from the figures beside it (the time figures of the last
    ``--page`` run, the instruction counts of the last ``instr.py --page`` run)."""
    results = json.loads(path.with_suffix(".json").read_text())
    old = path.read_text().splitlines() if path.exists() else []
    generated = next((line for line in old if line.startswith("Generated by `")), None)
    versions = next((line for line in old if line.startswith("Versions: ")), None)
    page(results, path, generated=generated, versions=versions)


def _store_modes(results: dict[str, Any]) -> str:
    """Where the store case of ``results`` ingested: figures made before the helper process
    existed have no thread case beside it, and ingested on a thread."""
    if "finetuner-otel + store (thread ingest)" not in results["cases"]:
        return "ingesting on a thread of the app (these figures predate the helper process)."
    return (
        "ingesting in its helper process (`FINETUNER_INGEST=process`, the default; the RSS "
        "column gives the helper's own peak beside the app's, and its CPU is not in the "
        "export-thread column); `(thread ingest)` ingests on a thread of the app "
        "(`FINETUNER_INGEST=thread`)."
    )


# A section of the page written from other runs (run.py's memory figures): kept as it is by
# every rendering of the page, from its heading to the end.
KEPT_HEADING = "## Ingest in a helper process or on a thread, and no span queue"


def page(
    results: dict[str, Any],
    path: Path,
    command: str = "",
    generated: str | None = None,
    versions: str | None = None,
) -> None:
    """The page: the time figures (``generated`` and ``versions``: the lines that say how they
    were made, kept when only the instruction counts are new; the plot is then left as is)."""
    png = path.with_suffix(".png")
    if generated is None or not png.exists():
        plot(results, png)
    installed = {}
    for dist in (
        "openai",
        "opentelemetry-sdk",
        "opentelemetry-instrumentation-openai-v2",
        "opentelemetry-instrumentation-openai",
        "openinference-instrumentation-openai",
    ):
        try:
            from importlib.metadata import version

            installed[dist] = version(dist)
        except Exception:
            installed[dist] = "not installed"
    old = path.read_text().splitlines() if path.exists() else []
    kept = old[old.index(KEPT_HEADING) :] if KEPT_HEADING in old else []
    text = [
        "# Performance: finetuner-otel beside the other OpenAI instrumentations",
        "",
        generated
        or "Generated by `"
        + command
        + "` "
        f"on {time.strftime('%Y-%m-%d')}: Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs ({platform.platform()}).",
        "",
        "Every case runs in a process of its own, on the same in-process HTTP transport (the "
        "SDK's full request path, no network), with content capture on and the same span "
        "processor (a BatchSpanProcessor whose exporter drops the spans). `finetuner-otel + "
        "store` adds our DuckDB exporter, as `instrument()` sets it up, "
        + _store_modes(results)
        + " Within each case's "
        f"process, blocks of {BLOCK} instrumented calls alternate with blocks of {BLOCK} calls "
        "with the instrumentation taken off (`uninstrument()`, checked to leave no wrapper), so "
        "each ratio pairs two blocks run moments apart on the same machine state; the table "
        "gives the min / median / max of those block ratios over every run, and the median "
        "per-call time of the instrumented blocks. The export-thread CPU is what the other "
        "threads of the process spent per instrumented call. This machine's speed drifts by "
        "up to 2x over seconds: the paired ratios are the figures to compare, not the µs. "
        "What pairing cannot see is a cost that lingers after `uninstrument()` and slows the "
        "whole process (OpenLLMetry's streaming calls slow its uninstrumented blocks too): the "
        "ratio to the bare process, each run's instrumented median over the bare case's "
        "median in the same repeat, shows it, with the drift of runs minutes apart.",
        "",
        *table(results),
        "",
        f"![overhead per instrumentation]({png.name})",
        "",
        versions or "Versions: " + ", ".join(f"{k} {v}" for k, v in installed.items()) + ".",
        "",
        *instruction_section(path),
        *kept,
        *([""] if kept and kept[-1] else []),  # the file ends with a line break
    ]
    path.write_text("\n".join(text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer calls and repeats")
    parser.add_argument("--page", type=Path, help="write the performance page (and its PNG) here")
    parser.add_argument("--calls", type=int, help="instrumented calls per timed run (default 1000)")
    parser.add_argument("--repeats", type=int, help="runs per case and mode (default 3)")
    parser.add_argument("--rss-calls", type=int, help="calls of the memory run (default 100000)")
    parser.add_argument("--cases", help="comma-separated, of: " + ", ".join(CASES))
    parser.add_argument("--rss-only", action="store_true", help="the memory runs only")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, mode, calls, warmup, tmp = args.child
        child(case, mode, int(calls), int(warmup), tmp)
        return
    calls, repeats, rss_calls = (200, 1, 5_000) if args.quick else (1_000, 3, 100_000)
    calls, repeats = args.calls or calls, args.repeats or repeats
    rss_calls = args.rss_calls or rss_calls
    wanted = args.cases.split(",") if args.cases else CASES
    missing = [c for c in wanted if not available(c)]
    print(f"Python {platform.python_version()} on {os.cpu_count()} CPUs; {calls} calls per run")
    if missing:
        print(f"  not installed, left out: {', '.join(missing)} (pip install -e '.[bench]')")
    cases = [c for c in wanted if available(c)]
    results = measure(calls, repeats, rss_calls, cases, timing=not args.rss_only)
    if args.rss_only:
        return
    print("\n".join(table(results)))
    if args.page:
        args.page.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
        command = "python " + " ".join(["tests/benchmarks/peers.py", *sys.argv[1:]])
        page(results, args.page, command)
        print(f"wrote {args.page} and {args.page.with_suffix('.png')}")


if __name__ == "__main__":
    main()
