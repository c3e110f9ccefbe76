# Two commands do everything: `make study` and `make test`. Each creates what is missing:
# the .venv, the Fashion-MNIST files (Debian package when root), the Jupyter kernel, latexmk
# (Debian packages when root).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
KERNEL := fmnist-optim
INSTALLED := $(VENV)/.installed
KERNEL_SPEC := $(VENV)/share/jupyter/kernels/$(KERNEL)/kernel.json
DATA_OK := $(VENV)/.data-verified
TEX_OK := $(VENV)/.latex-found
PROFILE ?= full
JOBS ?=

.PHONY: setup study test test-fast lab report preview benchmarks clean-venv

setup: $(INSTALLED) $(KERNEL_SPEC) $(DATA_OK) $(TEX_OK)

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

$(KERNEL_SPEC): $(INSTALLED)
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (fmnist-optim)"

$(DATA_OK): $(INSTALLED)
	$(PY) -m helpers data
	touch $@

# latexmk for the report (the Debian packages, installed when root; `make test` builds the CI report)
$(TEX_OK): $(INSTALLED)
	$(PY) -c "from helpers.evidence.report import ensure_latex; ensure_latex()"
	touch $@

# The study (PROFILE=full: train what the definition names and is missing, run every notebook,
# the summary, the report); PROFILE=quick is the smoke run, PROFILE=ci the one `make test` runs.
study: setup
	$(PY) -m helpers sweep --profile $(PROFILE) $(if $(JOBS),--jobs $(JOBS))

test: setup
	$(PY) -m pytest -q

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

report: setup
	$(PY) -m helpers report

# The report of the complete study, for layout: the runs not done yet filled with made-up records
# in outputs/scratch/preview (never in outputs/runs or report/); prints the page count.
preview: setup
	$(PY) -m helpers.evidence.preview

benchmarks: setup
	$(PY) -m benchmarks.run

# Per-method training cost on an idle machine (outputs/timing/seconds_per_epoch.csv, the study
# planner's cost table; wall times in the report): refuses while anything else runs; about 10
# minutes on 2 cores. TIMING="--methods sgd,adam" times a subset.
.PHONY: timing
timing: setup
	$(PY) -m helpers.study.timing $(TIMING)

clean-venv:
	rm -rf $(VENV)

# Plants each bug of the tables in tools/mutants/ in a scratch copy and runs the tests that must
# catch it (not part of `make test`); MUTANTS="--table curvature" or "--only NAME" runs a subset.
.PHONY: mutants
mutants: setup
	$(PY) tools/mutants/run.py $(MUTANTS)
