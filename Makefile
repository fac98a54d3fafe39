# scimflow: the two commands are `make demo` and `make test`. Every target bootstraps uv with pip
# when it is missing, then syncs the locked environment.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PY := $(UV) run --frozen
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: help bootstrap demo test lint bench soak figures fmt clean

help:
	@echo "make demo   - run the whole sync on local emulators (Graph + SuperOffice) with a local Prefect"
	@echo "              make demo TARGET=scim: the same against a SCIM 2.0 emulator (SuperOffice Online)"
	@echo "make test   - run the test suite"
	@echo "make lint   - ruff + mypy"
	@echo "make bench  - benchmarks (writes bench/results.md)"
	@echo "make soak   - bounded fault/crash soak (SOAK_SECONDS, default 300)"
	@echo "make figures - rerun the reliability suite and the browser test, writing README's figures and docs/img"

bootstrap: .venv/.synced

.venv/.synced: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@$(UV) sync --frozen --quiet
	@touch $@

# TARGET=scim runs the demo against a SCIM 2.0 emulator (SuperOffice Online's route) instead of the Web API
TARGET ?= superoffice
demo: bootstrap
	$(PY) scimflow demo --target $(TARGET)

# Three pytest-xdist workers, a test file each at a time (its module fixtures stay in one process; each worker
# starts its own Prefect server when its files need one): most tests wait on sockets, servers and polls, so
# three workers keep two cores busy. XDIST= runs the suite in one process.
XDIST ?= -n 3 --dist loadfile
test: bootstrap
	$(PY) pytest -q -p no:cacheprovider $(XDIST) $(PYTEST_ARGS)

lint: bootstrap
	$(PY) ruff check .
	$(PY) ruff format --check scimflow flows tasks
	$(PY) mypy scimflow flows tasks

fmt: bootstrap
	$(PY) ruff check --fix .
	$(PY) ruff format scimflow flows tasks

bench: bootstrap
	$(PY) python -m bench

# The only target that writes tracked files from a test run: tests/reliability/figures.json, README-section.md,
# README.md's Reliability section (after a full passing run of tests/reliability) and docs/img/*.png.
figures: bootstrap
	SCIMFLOW_WRITE_FIGURES=1 $(PY) pytest -q -p no:cacheprovider tests/reliability tests/browser

soak: bootstrap
	$(PY) python -m tests.reliability.soak --seconds $${SOAK_SECONDS:-300}

clean:
	rm -rf .scimflow .pytest_cache .mypy_cache .ruff_cache
