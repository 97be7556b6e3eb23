# The book's two commands (see README):  `make book`  and  `make test`.
# Each creates .venv and installs what it needs on first use.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
VENDOR := _vendor
NB ?= notebooks/*.ipynb

# Tests never reach a model hub; smoke mode keeps every chapter to seconds.
# (No MPLBACKEND here: notebook kernels must keep Jupyter's inline backend to store figures.)
# OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep instead of spinning, so two torch processes on
# two cores (pytest + a notebook kernel) do not slow each other 10-40x.
TEST_ENV := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GENAI_MODE=smoke PYTHONHASHSEED=0 OMP_WAIT_POLICY=PASSIVE

.PHONY: help setup book test unit notebooks site-check lab execute bench clean

help:
	@echo "make book     build the static site into _build/html (from stored notebook outputs)"
	@echo "make test     unit tests, every notebook under nbval (smoke mode), stale-output check,"
	@echo "              book build with warnings as errors, browser check of the site"
	@echo "make lab      open the chapters in JupyterLab"
	@echo "make execute NB=notebooks/01_attention.ipynb   re-run chapters in full mode, store outputs"
	@echo "make bench    run the side-by-side benchmarks in benchmarks/"

setup: $(STAMP) $(VENDOR)/.stamp

$(STAMP): requirements-ci.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	set -o pipefail; $(PY) -m pip install -q -r requirements-ci.txt 2>&1 | { grep -v "^WARNING: Location" || true; }
	set -o pipefail; $(PY) -m pip install -q --no-deps -e . 2>&1 | { grep -v "^WARNING: Location" || true; }
	@touch $(STAMP)

# MathJax, RequireJS and the ipywidgets embed manager, from the npm registry, so the site renders
# math and saved widgets with no CDN (see tools/vendor_assets.sh).
$(VENDOR)/.stamp: tools/vendor_assets.sh
	bash tools/vendor_assets.sh $(VENDOR)
	@touch $@

book: setup
	$(BIN)/jupyter-book build --keep-going .
	@echo "The book is built: open $(CURDIR)/_build/html/index.html"

unit: setup
	$(TEST_ENV) $(BIN)/pytest -q tests --ignore=tests/site

notebooks: setup
	$(TEST_ENV) $(BIN)/pytest -q --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg notebooks

site-check: setup
	$(TEST_ENV) $(BIN)/jupyter-book build -W -n --keep-going .
	$(TEST_ENV) GENAI_SITE_DIR=_build/html $(BIN)/pytest -q tests/site

# Everything, in one pytest run at the end so its closing line counts every test.
test: setup
	$(TEST_ENV) $(BIN)/jupyter-book build -W -n --keep-going .
	$(TEST_ENV) GENAI_SITE_DIR=_build/html $(BIN)/pytest -q --nbval-lax --nbval-current-env \
	    --nbval-sanitize-with tests/nbval_sanitize.cfg tests notebooks

lab: setup
	$(BIN)/jupyter lab --notebook-dir=. $(if $(filter 0,$(shell id -u)),--allow-root,)

execute: setup
	HF_HUB_OFFLINE=1 PYTHONHASHSEED=0 OMP_WAIT_POLICY=PASSIVE $(PY) -m genai_helpers.notebook execute $(NB)

# Side-by-side benchmarks (< 10 minutes on 2 CPU cores); each writes benchmarks/results/<name>.json.
bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; start=$$(date +%s); \
	    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg $(PY) $$b || exit 1; \
	    echo "   ($$(( $$(date +%s) - start )) s)"; done

clean:
	rm -rf _build .pytest_cache
