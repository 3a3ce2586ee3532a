# Two commands do all set-up on a fresh machine with Python >= 3.10:
#   make demo    capture calls into ./finetuner.duckdb and build a dataset (no API key needed)
#   make test    the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python examples/quickstart.py

test: $(BIN)/.installed
	$(BIN)/python -m pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check finetuner_otel exporters tests examples
	$(BIN)/mypy
	$(BIN)/mypy --strict exporters

bench: $(BIN)/.installed
	$(BIN)/python tests/benchmarks/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
