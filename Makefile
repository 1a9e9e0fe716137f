# Two commands set everything up from a fresh clone:
#   make demo   - create .venv, install slimbert with the bundled teacher and corpus, run `slimbert demo --quick`
#   make test   - create .venv, install slimbert with test tools, run the test suite
# and one runs the suite on the other supported transformers line:
#   make test5  - create .venv5 with transformers 5.x (no optimum-onnx, which caps transformers
#                 below 4.58: export goes through torch.onnx), run the same test suite
#   make test-portable - the suite on AVX2 kernels and one thread (what CPUs without AMX compute)
#   make triton-env - .venv-triton: a real tritonserver (the nvidia-pytriton wheel) for the
#                 tests that serve an export on it; `make test` makes it first
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
VENV5 ?= .venv5
BIN5 := $(VENV5)/bin
DEMO_ARGS ?= --quick
# The extras both lines install (every test's optional package); the 4.x line adds optimum.
EXTRAS := demo,serve,dev,datasets,tensorboard

TRITON_ENV ?= .venv-triton

.PHONY: install install5 triton-env demo test test5 test-portable lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(BIN5)/python:
	$(PYTHON) -m venv $(VENV5)
	$(BIN5)/pip install -q --upgrade pip

# torch is installed first and pinned to the CPU build so that the project's range never
# resolves to a multi-GB CUDA wheel on a machine without a GPU.
# The optimum extra holds transformers at 4.57 (optimum-onnx 0.1.0 requires <4.58). Each line
# names its transformers range on the command line: pip's resolver then settles in under a
# minute, where from the extras alone it backtracks through transformers, tokenizers and
# sentence-transformers releases for over 15 minutes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[optimum,$(EXTRAS)]" "transformers>=4.50,<4.58"
	$(BIN)/pip check
	touch $@

# The transformers 5 line: the same extras less optimum.
$(VENV5)/.installed: pyproject.toml | $(BIN5)/python
	$(BIN5)/pip install -q "torch==2.13.0"
	$(BIN5)/pip install -q -e ".[$(EXTRAS)]" "transformers>=5,<6"
	$(BIN5)/pip check
	touch $@

# Triton's pip build (nvidia-pytriton: tritonserver 2.51 with the Python backend, no onnxruntime
# backend) requires numpy<2, and the server's Python models import from the environment it is
# installed in: so it gets a venv of its own, apart from slimbert's (numpy 2), holding what the
# models of `export --triton-backend python` import. tests/serve/test_triton_server.py starts it, and
# checks `--triton-deploy`'s manifests against the typed models of the KServe and Kubernetes SDKs
# (kserve pulls kubernetes; both need protobuf < 7, which slimbert's environment is past).
$(TRITON_ENV)/.installed:
	$(PYTHON) -m venv $(TRITON_ENV)
	$(TRITON_ENV)/bin/pip install -q --upgrade pip
	$(TRITON_ENV)/bin/pip install -q "nvidia-pytriton==0.7.0" "numpy>=1.26,<2" \
		"onnxruntime>=1.20" "tokenizers>=0.20" "kserve==0.21.0"
	$(TRITON_ENV)/bin/pip check
	touch $@

install: $(VENV)/.installed

triton-env: $(TRITON_ENV)/.installed

install5: $(VENV5)/.installed

demo: install
	$(BIN)/slimbert demo $(DEMO_ARGS)

test: install triton-env
	$(BIN)/python -m pytest

test5: install5
	$(BIN5)/python -m pytest

# The same suite as a CPU without AMX or AVX-512 computes it, on one thread: oneDNN and MKL are
# held to their AVX2 kernels, so a test that holds only on the CPU it was written on (an exact
# float comparison, a loss pinned past float32 rounding) fails here first, not on a user's AMD.
# ONNX Runtime's int8 kernels pick theirs by CPUID and are not held: on an AVX2-only CPU the
# int8 weight range follows the CPU (slimbert/cpu.py), tests/test_cpu.py covers both choices.
test-portable: install
	ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 OMP_NUM_THREADS=1 $(BIN)/python -m pytest

# ruff, then the layout: module and function sizes, import cycles, imports across the floors
# docs/architecture.md lists (benchmarks/architecture_check.py; its allow-lists only shrink)
lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python benchmarks/architecture_check.py

clean:
	rm -rf $(VENV) $(VENV5) $(TRITON_ENV) demo-out
