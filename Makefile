# mlpmnist: `make help` lists the targets. Every target builds .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help study science publish publish-study publish-science test test-unit test-fast lint format typecheck bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q -e .
	touch $@

# Running and publishing are apart. study and science run their notebooks with papermill and write
# only under results/ (a rerun skips every experiment done and resumes an interrupted one); the
# publish targets are the only writers of the committed outputs: the notebooks without their
# injected parameters and run timings, media/, and the README's generated blocks
# (mlpmnist.workbench.publish), so publishing a rerun that computes the same numbers changes nothing.
STUDY := results/study

study: $(STAMP) ## the whole study (13 to 25 min on 2 cores), under results/ only: results/run.ipynb, results/study/
	mkdir -p results
	$(VENV)/bin/papermill run.ipynb results/run.ipynb --cwd . --kernel python3 --log-output -p media_dir $(STUDY)

science: $(STAMP) ## notebooks/batch_science.ipynb, the full run (about 40 min on 2 cores; resumes), under results/ only
	mkdir -p results/science
	$(VENV)/bin/papermill notebooks/batch_science.ipynb results/science/batch_science.ipynb --cwd . \
		--kernel python3 --log-output

publish-study: $(STAMP) ## from make study's results: run.ipynb, media/ (figures, CSVs) and the README's study blocks
	$(PY) -m mlpmnist.workbench.publish results/run.ipynb run.ipynb --media $(STUDY) media --readme README.md

publish-science: $(STAMP) ## from make science's results: notebooks/batch_science.ipynb and media/science_*
	$(PY) -m mlpmnist.workbench.publish results/science/batch_science.ipynb notebooks/batch_science.ipynb \
		--media results/science/media media --readme README.md

publish: publish-study publish-science ## both: every committed output, from results/

test: lint typecheck ## lint, type check and every test tier on 2 processes (real MNIST: set MLPMNIST_DATA)
	$(VENV)/bin/pytest -q -n 2

test-unit: $(STAMP) ## the unit tier alone: no data, no process (under a minute)
	$(VENV)/bin/pytest -q -m unit

test-fast: $(STAMP) ## the unit and integration tiers, without the system tier's kernels and processes
	$(VENV)/bin/pytest -q -n 2 -m "not system"

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
