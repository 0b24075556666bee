# The course's two commands: `make lab` and `make test`. Both create or reuse .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Everything runs offline: the course's own flag plus the Hugging Face ones.
export VLP_COURSE_OFFLINE := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLBACKEND := Agg
export PYTHONHASHSEED := 0
JUPYTER_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: venv lab test unit notebooks check-notebooks nbval student-test student bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -c constraints.txt -e ".[lab,test]"
	@touch $(STAMP)

lab: venv
	unset VLP_COURSE_OFFLINE HF_HUB_OFFLINE TRANSFORMERS_OFFLINE MPLBACKEND; \
	  $(BIN)/jupyter lab notebooks/00_index.ipynb $(JUPYTER_ROOT)

test: venv check-notebooks unit nbval student-test
	@echo "make test: all stages passed"

check-notebooks: venv
	$(BIN)/python tools/notebooks.py check

unit: venv
	$(BIN)/python -m pytest -q -n 2 tests --ignore=tests/notebooks

# Every instructor notebook, executed top to bottom; prints a per-notebook duration table.
nbval: venv
	$(BIN)/python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env \
	  --nbval-cell-timeout=300 notebooks/*.ipynb

# Student copies: generated with nbgrader's preprocessors, executed; every graded check must fail.
# Two kernels run side by side, one core each: more threads than cores makes OpenMP spin and stall.
student-test: venv
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 tests/notebooks

notebooks: venv
	$(BIN)/python tools/notebooks.py build

student: venv
	$(BIN)/python tools/notebooks.py student build/student

# Benchmarks (numbers, not tests) -> benchmarks/results/; e.g. make bench BENCH_ARGS="--quick --threads 1"
bench: venv
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf build .pytest_cache
