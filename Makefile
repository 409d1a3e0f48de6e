# Thin wrappers. `make lab` and `make test` are the two commands a newcomer runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.labkit-installed
# The tested torch, installed first and alone: where a local CPU wheel is offered
# (as on the course machines) pip takes it instead of pulling CUDA packages.
TORCH  := torch==2.13.0
# Extra options for JupyterLab, e.g. LAB_ARGS="--no-browser --port 8899"
LAB_ARGS ?=
# Jupyter refuses to start as root (common in containers) unless told it may.
ROOT_ARG := $(if $(filter 0,$(shell id -u)),--allow-root)
# JupyterLab's news/update pop-up (plugin @jupyterlab/apputils-extension:announcements) would cover
# the first screen; `jupyter labextension disable` turns it off in the venv's labconfig/page_config.json.
LABCONFIG := $(VENV)/etc/jupyter/labconfig/page_config.json

.PHONY: install lab test test-fast student grade gradescope book bench compile-check gpu-check clean

install: $(STAMP)

# numpy 2.4 and scipy 1.17 need Python 3.11 or newer: say so before installing anything.
$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "labkit needs Python 3.11, 3.12 or 3.13; '$(PYTHON)' is $$($(PYTHON) --version 2>&1). Run: make PYTHON=python3.12 ..."; \
	  exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

$(LABCONFIG): | $(STAMP)
	$(BIN)/jupyter labextension disable --level=sys_prefix "@jupyterlab/apputils-extension:announcements" >/dev/null

# Blank copies are made for notebooks that have none yet; existing work is never touched.
lab: $(STAMP) $(LABCONFIG)
	$(BIN)/python -m labkit student notebooks exercises
	$(BIN)/jupyter lab --notebook-dir=. $(ROOT_ARG) $(LAB_ARGS) exercises/00_start_here.ipynb

# -n auto --dist loadscope: tests in parallel, each notebook's cells in order on one worker.
test: $(STAMP)
	$(BIN)/python -m pytest -n auto --dist loadscope --nbval-lax --nbval-current-env tests notebooks

student: $(STAMP)
	$(BIN)/python -m labkit student notebooks exercises

grade: $(STAMP)
	$(BIN)/python -m labkit grade $(or $(NB),exercises)

# The Gradescope autograder (setup.sh, run_autograder, labkit's wheel, blank copies): no solution inside.
gradescope: $(STAMP)
	$(BIN)/python -m labkit gradescope build/autograder.zip

# The course website from the stored outputs (student view, no solution): build/book/html/index.html
book: $(STAMP)
	$(BIN)/python -m labkit book build/book

bench: $(STAMP)
	$(BIN)/python -m labkit bench $(or $(SUITE),softmax)

# Compile every kernel for sm_75..sm_120 on a CPU (no GPU needed); exit 1 on shared-memory overflow or spills.
compile-check: $(STAMP)
	$(BIN)/python -m labkit compile-check --arch 75,80,86,89,90,120

# The one command for a CUDA machine: kernel tests compiled, notebooks 06-07 (large), GPU benchmarks.
gpu-check: $(STAMP)
	$(BIN)/python -m labkit gpu-check

clean:
	rm -rf $(VENV) .pytest_cache
