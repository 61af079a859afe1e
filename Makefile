# partrobust: make install | make smoke | make test | make study | make ablations | make robustness | make figures | make bench | make weights | make nbdime | make lab | make clean
# Uses the active virtual environment (or conda env) if there is one, else creates .venv.
SHELL := /bin/bash
PYTHON ?= python3

ifneq ($(VIRTUAL_ENV),)
  ENV_DIR := $(VIRTUAL_ENV)
else ifneq ($(CONDA_PREFIX),)
  ENV_DIR := $(CONDA_PREFIX)
else
  ENV_DIR := $(CURDIR)/.venv
endif
PY := $(ENV_DIR)/bin/python
STAMP := $(ENV_DIR)/.partrobust-installed

.PHONY: install nbfilter smoke study ablations robustness figures bench test test-fast weights nbdime lab clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x "$(PY)" ]; then echo "creating virtual environment in $(ENV_DIR)"; $(PYTHON) -m venv "$(ENV_DIR)"; fi
	"$(PY)" -m pip install --quiet --upgrade pip
	"$(PY)" -m pip install --quiet -e '.[dev]'
	"$(PY)" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (partrobust)" >/dev/null
	@$(MAKE) --no-print-directory nbfilter PY="$(PY)"
	@touch "$(STAMP)"

# The git clean filter that keeps notebook outputs and Lab's metadata out of git (.gitattributes; once per clone,
# run by make install): a notebook run and autosaved in Lab keeps its outputs on disk and stays unmodified for git.
nbfilter:
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  git config filter.partrobust-notebook.clean '"$(PY)" -m partrobust.runs.nbclean' && \
	  git config filter.partrobust-notebook.smudge cat && \
	  echo "git: notebook outputs are filtered out (filter.partrobust-notebook)"; fi

# The whole loop on the built-in synthetic data on a CPU: notebooks 00 and 01 -> runs/smoke/
smoke: install
	"$(PY)" -m partrobust.pipeline params/smoke.yaml

# The built-in study (27 runs, 2 at a time; < 1 hour on 2 CPU cores): figures/builtin_study/ (its results
# snapshot included), the README's table, then the paper's figures and figures/REPORT.md.
study: install
	"$(PY)" -m partrobust.pipeline params/builtin_study.yaml --jobs 2
	"$(PY)" -m partrobust.figures runs/builtin_study --snapshot figures/builtin_study
	"$(PY)" -m partrobust.report.readme figures/builtin_study/table.md builtin-study-table
	"$(PY)" -m partrobust.figures

# Notebook 03's default ablations on the built-in data (39 runs, 31 of them trained, one seed, about 56 minutes on 2 CPU cores):
# its figures and results snapshot in figures/builtin_ablations/, then the paper's figures and figures/REPORT.md.
ablations: install
	"$(PY)" -m partrobust.pipeline params/ablations_smoke.yaml --runner process
	"$(PY)" -m partrobust.figures runs/ablations_smoke --snapshot figures/builtin_ablations
	"$(PY)" -m partrobust.figures

# Notebook 04's default study on the built-in data (12 runs + 4 texture-cue runs, about 23 minutes on 2 CPU cores): the
# benchmarks, mean ± CI and t-tests, the texture-cue check; its results snapshot in
# figures/builtin_robustness/, then the paper's figures and figures/REPORT.md.
robustness: install
	"$(PY)" -m partrobust.pipeline params/robustness_smoke.yaml
	"$(PY)" -m partrobust.figures runs/robustness_smoke --snapshot figures/builtin_robustness
	"$(PY)" -m partrobust.figures

# Every table and figure of the paper that the results cover, side by side with the paper, and
# figures/REPORT.md (seconds, CPU). Inputs: the committed snapshots in figures/ and the runs/
# experiments on the paper's datasets; or name them: make figures INPUTS="runs/a runs/b".
figures: install
	"$(PY)" -m partrobust.figures $(INPUTS)

# How fast this machine trains and attacks (img/s, memory, TFLOP/s, MFU, ratio to fp32, Table 1 GPU-hours):
# Part-ImageNet shapes on a GPU (a few minutes; BENCH_ARGS=--compile adds torch.compile), tiny shapes on a CPU
# (about 30 s on 2 cores, measured 2026-12-04) -> runs/bench/bench-<cuda|cpu>.csv.
bench: install
	"$(PY)" -m partrobust.bench $(BENCH_ARGS)

# Unit tests and papermill runs of the notebooks on tiny parameters, in TEST_WORKERS processes (pytest-xdist;
# one torch thread each), a module at a time per worker, the modules of the longest tests first (tests/conftest.py).
TEST_WORKERS ?= 2
PYTEST_PARALLEL = -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
test: install
	"$(PY)" -m pytest $(PYTEST_PARALLEL)

# Only the fast unit tests (no training, no notebooks).
test-fast: install
	"$(PY)" -m pytest -m "not slow" $(PYTEST_PARALLEL)

# The ImageNet weights the paper's params files point at (needs internet; verified by checksum).
weights: install
	"$(PY)" -m partrobust.weights fetch

# Notebook-aware git diffs and merges (once per clone).
nbdime: install
	"$(ENV_DIR)/bin/nbdime" config-git --enable
	git config diff.jupyternotebook.command "$(ENV_DIR)/bin/git-nbdiffdriver diff"
	git config merge.jupyternotebook.driver "$(ENV_DIR)/bin/git-nbmergedriver merge %O %A %B %L %P"

# JupyterLab on the repository root (notebooks/, runs/, figures/, params/ all open from it), in the notebooks folder.
lab: install
	"$(ENV_DIR)/bin/jupyter" lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks

clean:
	rm -rf runs/smoke runs/builtin
