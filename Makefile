# The course's two commands: `make lab` and `make test`. Both create or reuse .venv.
# Learners: docs/learners.md. Instructors: docs/instructors.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The venv's programs come first on PATH, so tools that call others by name (nbgrader runs
# `alembic`) work without activating the venv.
export PATH := $(abspath $(BIN)):$(PATH)
# Everything runs offline: the course's own flag plus the Hugging Face ones (`make lab ONLINE=1` lifts them).
export VLP_COURSE_OFFLINE := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLBACKEND := Agg
export PYTHONHASHSEED := 0
# Under CI: no progress bars (each redraw is a kernel message nbval must wait for).
ifneq ($(CI),)
export TQDM_DISABLE := 1
endif
yes = $(filter 1 yes true,$(1))

# The learner's folder: exercise copies, and solved ones in $(WORK)/solutions. Made on first use,
# never overwritten.
WORK ?= mywork
# make lab PORT=8890 IP=0.0.0.0 BROWSER=no ONLINE=1
PORT ?=
IP ?=
BROWSER ?=
ONLINE ?=
LAB_ENV := $(if $(call yes,$(ONLINE)),-u VLP_COURSE_OFFLINE -u HF_HUB_OFFLINE -u TRANSFORMERS_OFFLINE,) -u MPLBACKEND
# Instructors: make release NB="01 04"; make grade SUBMISSIONS=path/to/folder
NB ?=
SUBMISSIONS ?=
TIMEOUT ?= 600
INSTRUCTOR := instructor
# Python versions whose resolution of the pinned set `make test` checks (pip --dry-run, no install).
PYTHON_VERSIONS ?= 3.10 3.11 3.12 3.13

.PHONY: venv lab learner-copies test unit notebooks check-notebooks check-resolution notebooks-run nbval student-test \
  student release grade nbgrader-source nbgrader bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -c constraints.txt -e ".[lab,test]"
	@touch $(STAMP)

# JupyterLab on the learner's own copies ($(WORK)/), opened on the index.
lab: venv
	env $(LAB_ENV) $(BIN)/python tools/notebooks.py lab $(WORK) \
	  $(if $(PORT),--port $(PORT)) $(if $(IP),--ip $(IP)) $(if $(BROWSER),--browser $(BROWSER))

learner-copies: venv
	$(BIN)/python tools/notebooks.py learner $(WORK)

# Every stage: the notebooks run once (notebooks-run), and the site and the browser test read
# those executed copies.
test: venv check-notebooks check-resolution unit notebooks-run student-test site-check browser-test
	@echo "make test: all stages passed"

check-notebooks: venv
	$(BIN)/python tools/notebooks.py check

# The pinned set resolves on every supported Python (resolution only: pip --dry-run, needs the index).
check-resolution: venv
	$(BIN)/python tools/check_resolution.py $(PYTHON_VERSIONS)

unit: venv
	$(BIN)/python -m pytest -q -n 2 tests --ignore=tests/notebooks

# Every instructor notebook, executed top to bottom in a fresh kernel (nbclient; fails on the first
# error, 300 s per cell); the executed copies go to build/executed/ for the site; prints and writes
# (build/notebook-times.csv) a per-notebook duration table.
notebooks-run: venv
	$(BIN)/python tools/course_site.py execute --times-csv build/notebook-times.csv

# The same notebooks under nbval (pytest, one item per cell), for debugging a failing cell.
nbval: venv
	$(BIN)/python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env \
	  --nbval-cell-timeout=300 notebooks/*.ipynb

# Student copies (generated with nbgrader's preprocessors, executed; every graded check must fail)
# and the grading tool on fake submissions.
# Two kernels run side by side, one core each: more threads than cores makes OpenMP spin and stall.
student-test: venv
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 tests/notebooks

notebooks: venv
	$(BIN)/python tools/notebooks.py build

# Student copies of every notebook in build/student/; a copy that changed is kept unless FORCE=1.
student: venv
	$(BIN)/python tools/notebooks.py student build/student $(if $(call yes,$(FORCE)),--force)

# Release student copies of chosen notebooks, stamped, with a manifest: make release NB="01 04"
release: venv
	$(BIN)/python tools/grade.py release $(NB) --out $(INSTRUCTOR)/release $(if $(call yes,$(FORCE)),--force)

# Grade a folder of completed notebooks: make grade SUBMISSIONS=path/to/folder [TIMEOUT=600]
grade: venv
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=path/to/folder"; exit 2; }
	$(BIN)/python tools/grade.py grade "$(SUBMISSIONS)" --out $(INSTRUCTOR)/grades --timeout $(TIMEOUT)

# nbgrader (nbgrader_config.py; course folder $(INSTRUCTOR)/nbgrader): copy the instructor notebooks in
# as assignments, then run nbgrader's own commands, e.g. make nbgrader ARGS="generate_assignment 04_lenet5"
nbgrader-source: venv
	$(BIN)/python tools/grade.py nbgrader-source $(NB)

nbgrader: venv
	$(BIN)/nbgrader $(ARGS)

# Benchmarks (numbers, not tests) -> benchmarks/results/; e.g. make bench BENCH_ARGS="--quick --threads 1"
bench: venv
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

# Removes what the build regenerates; never $(WORK)/ or $(INSTRUCTOR)/, nor a student copy in
# build/student that was changed (FORCE=1 removes those too).
clean:
	rm -rf .pytest_cache build/notebook-times.csv build/executed build/site build/browser
	@if [ -d build/student ]; then $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) tools/notebooks.py clean build/student $(if $(call yes,$(FORCE)),--force); fi

# The course as a static site (docs/site; Sphinx + myst-nb) in build/site/html, built from the
# executed notebooks in build/executed/ (executing only those that are missing or stale), then
# checked offline: every notebook's page, every image, every internal link (tools/course_site.py).
.PHONY: site site-check browser-test
# The site's own tools (Sphinx, myst-nb, selenium: the `site` extra; their pins need Python 3.11+),
# installed on first use so that `make lab` stays as light as it was and works on Python 3.10.
SITE_STAMP := $(VENV)/.installed-site

$(SITE_STAMP): $(STAMP)
	$(BIN)/python -m pip install -c constraints.txt -e ".[lab,test,site]"
	@touch $(SITE_STAMP)

site: $(SITE_STAMP)
	$(BIN)/python tools/course_site.py build

# In make test: only from the copies notebooks-run executed (never runs a notebook a second time).
site-check: $(SITE_STAMP)
	$(BIN)/python tools/course_site.py build --no-execute

# JupyterLab (as `make lab` starts it) and the site in headless Chromium: runs notebook 9's solved
# copy, changes its widget, opens two site pages; screenshots in build/browser/. Installs Debian's
# chromium and chromium-driver when missing (as root, as CI runs).
browser-test: $(SITE_STAMP)
	@test -f build/site/html/index.html || $(MAKE) --no-print-directory site
	@command -v chromedriver >/dev/null || { test "$$(id -u)" = 0 && apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }
	$(BIN)/python tools/browser_check.py
