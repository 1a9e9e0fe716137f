# Two commands set everything up from a fresh clone:
#   make demo   - create .venv, install slimbert with the bundled teacher and corpus, run `slimbert demo --quick`
#   make test   - create .venv, install slimbert with test tools, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_ARGS ?= --quick

.PHONY: install demo test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is installed first and pinned to the CPU build so that the project's range never
# resolves to a multi-GB CUDA wheel on a machine without a GPU.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[demo,serve,dev]"
	$(BIN)/pip check
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/slimbert demo $(DEMO_ARGS)

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) demo-out
