"""Run tests/frameworks: each framework's tests in a virtual environment of its own.

The frameworks pin the openai SDK differently (installed together, instructor pulls it back a
major version), so each gets ``.venv-frameworks/<name>``: this checkout (editable), pytest,
pyyaml and the framework, every version pinned in ``constraints/<name>.txt``. An environment is
made again only when its pins, the framework's requirement, the ``[project]`` table of
``pyproject.toml`` (dependencies, entry points; not the tool settings) or the Python version
change (a stamp of their hash), so a second run starts at once::

    python tests/frameworks/run.py                 # every framework (make frameworks)
    python tests/frameworks/run.py litellm -- -x   # one, with pytest options after --
    python tests/frameworks/run.py --lock          # resolve afresh, write constraints/*.txt

It prints one summary line per framework and exits 1 if any failed. Plain ``venv`` and ``pip``
rather than nox or tox: nothing more to install, and the reuse rule is the stamp above.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
ENVS = REPO / ".venv-frameworks"

# The framework under test in each environment: the release tested (PyPI's newest when pinned).
FRAMEWORKS: dict[str, tuple[str, ...]] = {
    "langchain": ("langchain-openai==1.7.4",),
    "instructor": ("instructor==1.17.0",),
    "pydantic_ai": ("pydantic-ai-slim[openai]==2.68.0",),
    "openai_agents": ("openai-agents==0.24.0",),
    "litellm": ("litellm==1.110.2",),
}
# What every environment has beside the framework.
TOOLS = ("pytest>=8", "pyyaml>=6")


@dataclass(frozen=True)
class Outcome:
    name: str
    code: int
    setup: str
    seconds: float
    tail: str


def constraints(name: str) -> Path:
    return HERE / "constraints" / f"{name}.txt"


def stamp_of(name: str) -> str:
    """The hash of everything an environment is made from."""
    digest = hashlib.sha256()
    pins = constraints(name)
    digest.update(pins.read_bytes() if pins.exists() else b"<no pins>")
    digest.update("\n".join(FRAMEWORKS[name] + TOOLS).encode())
    digest.update(project_table())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def project_table() -> bytes:
    """What an editable install of this checkout depends on: pyproject's [project] table."""
    text = (REPO / "pyproject.toml").read_bytes()
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the whole file, so a change is never missed
        return text
    return json.dumps(tomllib.loads(text.decode())["project"], sort_keys=True).encode()


def python_of(env: Path) -> Path:
    return env / ("Scripts" if os.name == "nt" else "bin") / "python"


def pip(env: Path, *args: str) -> None:
    command = [str(python_of(env)), "-m", "pip", "--quiet", "--disable-pip-version-check", *args]
    subprocess.run(command, check=True)


def ensure_env(name: str, lock: bool) -> str:
    """Make (or reuse) the environment of ``name``; say which."""
    env = ENVS / name
    stamp = env / ".finetuner-frameworks-stamp"
    wanted = stamp_of(name)
    if not lock and stamp.exists() and stamp.read_text() == wanted:
        return "env reused"
    if not lock and not constraints(name).exists():
        raise RuntimeError(f"no pins for {name}: make them with run.py --lock {name}")
    ENVS.mkdir(exist_ok=True)
    (ENVS / ".gitignore").write_text("*\n")  # made here, so never committed
    shutil.rmtree(env, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    pins = [] if lock else ["-c", str(constraints(name))]
    pip(env, "install", *pins, "-e", str(REPO), *TOOLS, *FRAMEWORKS[name])
    if lock:
        frozen = subprocess.run(
            [str(python_of(env)), "-m", "pip", "freeze", "--exclude-editable"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        header = f"# {', '.join(FRAMEWORKS[name])}: what run.py --lock resolved and tested\n"
        constraints(name).parent.mkdir(exist_ok=True)
        constraints(name).write_text(header + frozen)
        wanted = stamp_of(name)
    stamp.write_text(wanted)
    return "env made"


def run_tests(name: str, pytest_args: list[str]) -> tuple[int, str]:
    env = {**os.environ, "FINETUNER_FRAMEWORK": name}  # conftest.py turns telemetry off
    command = [
        str(python_of(ENVS / name)),
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        f"tests/frameworks/test_{name}.py",
        *pytest_args,
    ]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    tail = lines[-1].strip("= ") if lines else "no output"
    stats = [line for line in lines if line.startswith("finetuner-otel: ")]
    return proc.returncode, tail + (f"; {stats[-1][16:]}" if stats else "")


def run_one(name: str, lock: bool, pytest_args: list[str]) -> Outcome:
    started = time.monotonic()
    print(f"--- {name}: {', '.join(FRAMEWORKS[name])}", flush=True)
    try:
        setup = ensure_env(name, lock)
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        seconds = time.monotonic() - started
        return Outcome(name, 1, "env failed", seconds, str(exc))
    code, tail = run_tests(name, pytest_args)
    return Outcome(name, code, setup, time.monotonic() - started, tail)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    ours, pytest_args = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(FRAMEWORKS))
    parser.add_argument("--lock", action="store_true", help="resolve afresh, rewrite the pins")
    args = parser.parse_args(ours)
    unknown = [n for n in args.names if n not in FRAMEWORKS]
    if unknown:
        parser.error(f"no framework {unknown[0]!r}: choose from {', '.join(FRAMEWORKS)}")
    outcomes = [run_one(name, args.lock, pytest_args) for name in args.names or FRAMEWORKS]
    print("\n=== frameworks")
    for o in outcomes:
        verdict = "ok  " if o.code == 0 else "FAIL"
        print(f"{verdict} {o.name:<14} {o.tail}  ({o.setup}, {o.seconds:.0f} s)")
    return 0 if all(o.code == 0 for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
