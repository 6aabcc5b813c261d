# Two entry points: `make demo` (the main job) and `make test` (lint, type check, the whole test suite).
# Each creates its own virtual environment from the project's files.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m examples.closed_loop_demo

lint: $(STAMP)
	$(BIN)/ruff check otel_lightning tests bench examples
	$(BIN)/ruff format --check otel_lightning

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider

unit: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python bench/bench_ingest.py
	$(BIN)/python bench/bench_rollouts.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
