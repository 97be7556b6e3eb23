# The book's two commands (see README):  `make book`  and  `make test`.
# Each creates .venv and installs what it needs on first use; `make test` (and `make execute`)
# first runs tools/system_deps.sh, which installs the Debian packages the chapters read (fortunes,
# Fashion-MNIST, WordNet, Tesseract, the SWORD Bibles, Chromium, npm) or, off Debian/Ubuntu, stops
# with one message naming what to install.

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

.PHONY: help system-deps setup book test unit notebooks site-check lab execute bench clean pretrain pretrain-sweep pretrain-speech pretrain-mt pretrain-reader pretrain-reranker finetune-agent

help:
	@echo "make book     build the static site into _build/html (from stored notebook outputs)"
	@echo "make test     unit tests, every notebook under nbval (smoke mode), stale-output check,"
	@echo "              book build with warnings as errors, browser check of the site"
	@echo "make lab      open the chapters in JupyterLab"
	@echo "make execute NB=notebooks/01_attention.ipynb   re-run chapters in full mode, store outputs"
	@echo "make bench    run the side-by-side benchmarks in benchmarks/"
	@echo "make pretrain train the book LM (50 min on 2 CPU cores, resumable; SIZE=gpu on a GPU)"
	@echo "make pretrain-speech  train chapter 16's codec and TTS model (about 25 min on 2 CPU cores)"
	@echo "make pretrain-reader  fine-tune the book LM as chapter 7's grounded reader (about 6 min on 2 CPU cores, resumable)"
	@echo "make pretrain-reranker  train chapter 7's cross-encoder reranker (top MiniLM layer + head, about 5 min on 2 CPU cores)"
	@echo "make pretrain-mt   train chapter 5's translator (six settings at once for 330 s each, then the best is stored; made on one GPU: a CPU trains far less in that time)"
	@echo "make finetune-agent  fine-tune the book LM into chapter 8's ReAct policy (about 5 min on 2 CPU cores)"
	@echo "make system-deps   install the system packages the chapters need (Debian/Ubuntu; elsewhere: what to install)"

# The system packages (their list is in tools/system_deps.sh and nowhere else). Fast when they are
# all there: one dpkg-query. Not a prerequisite of setup, so that `make book` and `make lab` never
# run apt-get; they need only npm, checked where it is used.
system-deps:
	bash tools/system_deps.sh

# The vendored assets come first: without npm, make stops at once instead of after the pip install.
setup: $(VENDOR)/.stamp $(STAMP)

$(STAMP): requirements-ci.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	set -o pipefail; $(PY) -m pip install -q -r requirements-ci.txt 2>&1 | { grep -v "^WARNING: Location" || true; }
	set -o pipefail; $(PY) -m pip install -q --no-deps -e . 2>&1 | { grep -v "^WARNING: Location" || true; }
	@touch $(STAMP)

# MathJax, RequireJS and the ipywidgets embed manager, from the npm registry, so the site renders
# math and saved widgets with no CDN (see tools/vendor_assets.sh).
$(VENDOR)/.stamp: tools/vendor_assets.sh
	@test -f $(VENDOR)/VERSIONS || bash tools/system_deps.sh --check npm
	bash tools/vendor_assets.sh $(VENDOR)
	@touch $@

book: setup
	$(BIN)/jupyter-book build --keep-going .
	@echo "The book is built: open $(CURDIR)/_build/html/index.html"

unit: system-deps setup
	$(TEST_ENV) $(BIN)/pytest -q tests --ignore=tests/site

notebooks: system-deps setup
	$(TEST_ENV) $(BIN)/pytest -q --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg notebooks

site-check: system-deps setup
	$(TEST_ENV) $(BIN)/jupyter-book build -W -n --keep-going .
	$(TEST_ENV) GENAI_SITE_DIR=_build/html $(BIN)/pytest -q -rs tests/site

# Everything, in one pytest run at the end so its closing line counts every test. -rs lists the
# reason of every skipped test at the end (a browser check skipped for want of Chromium shows there).
test: system-deps setup
	$(TEST_ENV) $(BIN)/jupyter-book build -W -n --keep-going .
	$(TEST_ENV) GENAI_SITE_DIR=_build/html $(BIN)/pytest -q -rs --nbval-lax --nbval-current-env \
	    --nbval-sanitize-with tests/nbval_sanitize.cfg tests notebooks

lab: setup
	$(BIN)/jupyter lab --notebook-dir=. $(if $(filter 0,$(shell id -u)),--allow-root,)

execute: system-deps setup
	HF_HUB_OFFLINE=1 PYTHONHASHSEED=0 OMP_WAIT_POLICY=PASSIVE $(PY) -m genai_helpers.notebook execute $(NB)

# The book LM (genai_helpers/models/book_lm/): corpus -> byte-level BPE -> GPT, 50 minutes of
# training on 2 CPU cores (resumable: run it again after a stop), then the evaluation and the shipped
# weights + manifest. SIZE=gpu trains the bigger gpu= size on a CUDA device. `make pretrain-sweep`
# runs the scaling sweep that picked the size (about 13 minutes).
SIZE ?= cpu
pretrain: system-deps setup
	PYTHONHASHSEED=0 OMP_WAIT_POLICY=PASSIVE $(PY) -m genai_helpers.models.book_lm.pretrain --size $(SIZE)

# Chapter 8's ReAct policy: traces from the rule planner, the book LM fine-tuned on them; writes
# genai_helpers/agents/data/react_policy.{safetensors,json} (fp16 weights + manifest, atomically).
finetune-agent: setup
	PYTHONHASHSEED=0 OMP_WAIT_POLICY=PASSIVE $(PY) -m genai_helpers.agents.lm_policy

pretrain-sweep: system-deps setup
	PYTHONHASHSEED=0 OMP_WAIT_POLICY=PASSIVE $(PY) -m genai_helpers.models.book_lm.pretrain --sweep

# Chapter 7's reader (genai_helpers/rag/book_lm_reader.*): RAFT-style data from the book's chunks
# (synthetic questions, oracle or distractor windows, abstention), then the book LM fine-tuned on it
# with one seed; resumable (checkpoints/book_lm_reader/), writes fp16 weights + manifest atomically.
pretrain-reader: setup
	PYTHONHASHSEED=0 OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 $(PY) -m genai_helpers.rag.lm_reader --steps 1200

# Chapter 7's trained reranker: a cross-encoder head on the packaged MiniLM (its top layer fine-tuned)
# on synthetic questions from the book's chunks; writes genai_helpers/rag/cross_encoder.{safetensors,json}.
pretrain-reranker: setup
	PYTHONHASHSEED=0 OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 $(PY) -m genai_helpers.rag.cross_encoder --steps 200

# Chapter 16's speech models (genai_helpers/speech/weights/): the neural codec, then the dual AR
# TTS model on its tokens; each stage is skipped when its weights exist (delete them to redo it).
pretrain-speech: system-deps setup
	PYTHONHASHSEED=0 OMP_WAIT_POLICY=PASSIVE $(PY) -m genai_helpers.speech.pretrain

# Chapter 5's translator (genai_helpers/models/bible_mt/): export and split the SWORD Bibles, train
# the joint BPE, run the six-run sweep for the same wall-clock budget each, then store the run with
# the best validation BLEU as int8 with its manifest, history and sweep summary (--join).
pretrain-mt: system-deps setup
	PYTHONHASHSEED=0 OMP_WAIT_POLICY=PASSIVE $(PY) -m genai_helpers.models.bible_mt.pretrain --prepare --sweep --work .mtwork --out .mtwork/out --seconds 330
	PYTHONHASHSEED=0 OMP_WAIT_POLICY=PASSIVE $(PY) -m genai_helpers.models.bible_mt.pretrain --join .mtwork/out --work .mtwork

# Side-by-side benchmarks (< 10 minutes on 2 CPU cores); each writes benchmarks/results/<name>.json.
bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; start=$$(date +%s); \
	    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg $(PY) $$b || exit 1; \
	    echo "   ($$(( $$(date +%s) - start )) s)"; done

clean:
	rm -rf _build .pytest_cache
