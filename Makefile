# mlpmnist: `make help` lists the targets. Every target builds .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help study science test test-fast lint format typecheck bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q -e .
	touch $@

# The only writers of the committed outputs: each passes its folders explicitly, and the committed
# notebook is the executed copy without papermill's injected-parameters cell (mlpmnist.workbench.publish), so
# a reader's own Run All of it writes under results/ again.
study: $(STAMP) ## run.ipynb by papermill -> results/run.ipynb, then run.ipynb, media/ and the README table
	mkdir -p results
	$(VENV)/bin/papermill run.ipynb results/run.ipynb --cwd . --kernel python3 -p media_dir media
	$(PY) -m mlpmnist.workbench.publish results/run.ipynb run.ipynb
	$(PY) -m mlpmnist.workbench.report media/study_summary.csv README.md

science: $(STAMP) ## notebooks/batch_science.ipynb (full run, about 14 min on 2 cores) -> results/science/, media/, the committed copy
	mkdir -p results/science
	$(VENV)/bin/papermill notebooks/batch_science.ipynb results/science/batch_science.ipynb --cwd . --kernel python3 \
		-p media_dir media -p out_dir results/science
	$(PY) -m mlpmnist.workbench.publish results/science/batch_science.ipynb notebooks/batch_science.ipynb

test: lint typecheck ## lint, type check and the whole test suite (real MNIST: set MLPMNIST_DATA)
	$(VENV)/bin/pytest -q

test-fast: $(STAMP) ## the tests not marked slow (under a minute)
	$(VENV)/bin/pytest -q -m "not slow"

lint: $(STAMP) ## ruff lint and format check; the stages' import direction (import-linter)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: $(STAMP) ## ruff format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: $(STAMP) ## mypy on src/
	$(VENV)/bin/mypy

bench: $(STAMP) ## speed targets: engine vs the original loop, GFLOP/s, study wall time
	$(PY) bench/run.py

clean: ## remove results/ (the study's working files)
	rm -rf results
