# Two commands do all set-up on a fresh machine with Python >= 3.10:
#   make demo    capture calls into ./finetuner.duckdb and build a dataset (no API key needed)
#   make test    the test suite (what CI runs)
#   make check   its fast part: the last run's failures, the unit tests, then all but the
#                slow tests; stops at the first failure (tests/README.md)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The torch build the local-trainer tests run on (a CPU build where one is at hand).
TORCH ?= torch==2.13.0

.PHONY: demo test check lint bench bench-peers bench-instr bench-iceberg screenshots clean frameworks

PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

# The package alone (what the demo needs), then the test and development tools on top.
$(BIN)/.installed-base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	touch $@

# opentelemetry-distro goes into a folder of its own: tests/test_launcher.py puts it on the path
# of the apps it launches, to show that another distro is left as it is; no other test sees it.
$(BIN)/.installed: $(BIN)/.installed-base
	$(PIP) -e '.[dev]' '$(TORCH)'
	$(PIP) --no-deps --upgrade --target $(VENV)/other-distro 'opentelemetry-distro>=0.51b0'
	touch $@

demo: $(BIN)/.installed-base
	$(BIN)/python examples/quickstart.py

test: $(BIN)/.installed
	$(BIN)/python -m pytest
	$(MAKE) frameworks

# The real frameworks (LangChain, instructor, pydantic-ai, openai-agents, litellm), each in an
# environment of its own under .venv-frameworks/, made once per set of pins
# (tests/frameworks/run.py, tests/frameworks/constraints/).
frameworks: $(BIN)/.installed-base
	$(BIN)/python tests/frameworks/run.py

check: $(BIN)/.installed
	$(BIN)/python -m pytest -m "not slow" -x -q --ff

lint: $(BIN)/.installed
	$(BIN)/ruff check finetuner_otel exporters tests examples
	$(BIN)/mypy

bench: $(BIN)/.installed
	$(BIN)/python tests/benchmarks/run.py

# Beside the other OpenAI instrumentations; rewrites docs/performance.md and its plot.
bench-peers: $(BIN)/.installed
	$(PIP) -e '.[bench]' '$(TORCH)'
	$(BIN)/python tests/benchmarks/peers.py --page docs/performance.md

# Per-call cost in instructions (callgrind, every thread counted), beside the same peers; adds
# its table to docs/performance.md. valgrind and gcc from Debian: apt-get install -y valgrind gcc
bench-instr: $(BIN)/.installed
	@command -v valgrind >/dev/null || { echo "bench-instr needs valgrind: apt-get install -y valgrind"; exit 1; }
	$(PIP) -e '.[bench]' '$(TORCH)'
	$(BIN)/python tests/benchmarks/instr.py --page docs/performance.md

# The Iceberg store beside the DuckDB file: receivers (1, 2, 4) and queries over 100,000 calls,
# on a throwaway PostgreSQL server (Debian's postgresql).
bench-iceberg: $(BIN)/.installed
	$(BIN)/python tests/benchmarks/iceberg.py

# The pictures of `finetuner ui` in README.md (docs/ui-*.png), in Debian's headless chromium.
screenshots: $(BIN)/.installed
	$(BIN)/python tests/ui_screenshots.py docs

clean:
	rm -rf $(VENV) .venv-frameworks build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# The local loop timed (tests/gpu_check.py): a small model built on the spot, a LoRA trained for
# a few steps, served (vLLM where it runs), an eval; seconds per step and tokens per second.
# On a GPU where torch sees one, on the CPU otherwise (slowly).
.PHONY: gpu-check
gpu-check: $(BIN)/.installed
	$(BIN)/python -m tests.gpu_check $(GPU_CHECK_ARGS)
