# sam2tune: `make demo` and `make test` each install what they need into .venv first.
#
#   make install   create .venv (if missing) and install requirements*.txt + sam2tune (editable)
#   make test      install, then run the whole test suite
#   make demo      install, then scripts/demo.py (phantom data, tiny CPU fine-tune, evaluate, report)
#   make lint      ruff check
#   make clean     remove caches and build artifacts (keeps .venv; `rm -rf .venv` for a full reset)
#
# The install runs once: .venv/.installed is re-made only when requirements*.txt or pyproject.toml change.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
REQS := $(wildcard requirements*.txt)
DEMO_ARGS ?=
PYTEST_ARGS ?=
# Test workers (pytest-xdist; a test file stays on one worker). CI has 2 cores; TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
# Build backend for sam2's sdist (built inside .venv); setuptools >= 70.1 needs no separate `wheel` package.
BUILD_TOOLS ?= setuptools==84.2.1

# sam2 is an sdist: never build its optional CUDA extension (CPU machines, no nvcc needed).
export SAM2_BUILD_CUDA := 0

.PHONY: install test demo lint clean

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# sam2 is an sdist and monailabel depends on it. Built in an isolated environment it would pull a second
# multi-GB torch just to run setup.py, which with SAM2_BUILD_CUDA=0 never uses torch (sam2's setup.py
# tolerates its absence: SAM2_BUILD_ALLOW_ERRORS=1, its default). So build the pure-Python wheel first, in .venv,
# without isolation or dependencies; then one resolve of the pinned stack, which finds sam2 already there and
# installs its requirements (torch, torchvision, numpy, ...) at the pinned versions. requirements-sam2.txt carries the
# sdist's sha256, so pip refuses a changed upload before building it.
$(STAMP): $(REQS) pyproject.toml | $(PY)
	$(PIP) install $(BUILD_TOOLS)
	SAM2_BUILD_ALLOW_ERRORS=1 $(PIP) install --no-build-isolation --no-deps -r requirements-sam2.txt
	$(PIP) install -r requirements.txt -r requirements-dev.txt
	$(PIP) install --no-deps -e .
	touch $@

test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS) tests

demo: install
	$(PY) scripts/demo.py $(DEMO_ARGS)

lint: install
	$(PY) -m ruff check .

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache demo_out
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
