# The two commands a newcomer runs: `make demo` and `make test`. Everything else is set-up they call.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: setup demo test lint bench tools clean

# The project, its test tools and a local ComfyUI at the pinned version (idempotent; fast when done).
setup: $(VENV)/.installed
	$(BIN)/worker-comfyui comfyui install
	$(BIN)/python -m compileall -q job trigger  # as `pip install .` does in the image

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test]'
	touch $@

# The main path once, on CPU, on embedded defaults: an inbox drop, its event, the function, the
# job and the outbox, all on loopback; prints where the outputs are.
demo: setup
	$(BIN)/worker-comfyui dev --demo

# The whole test suite, against a real ComfyUI, a GCS emulator and the static checkers.
test: setup tools
	$(BIN)/ruff check job trigger tests bench
	$(BIN)/mypy job trigger
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check job trigger tests bench
	$(BIN)/ruff format --check job trigger tests bench
	$(BIN)/mypy job trigger

bench: setup
	$(BIN)/python bench/bench_runner.py

# Static checkers that do not belong in the project's venv (checkov pins its own world).
tools:
	bash scripts/install_tools.sh

clean:
	rm -rf $(VENV) .tools out .pytest_cache .mypy_cache .ruff_cache
