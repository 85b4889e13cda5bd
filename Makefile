# Two commands: `make study` (the main job) and `make test`. Both build .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: study test lint bench figures clean

$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# The study: run.ipynb executed by papermill into results/run.ipynb (sweep, tables, figures).
study: $(STAMP)
	mkdir -p results
	$(VENV)/bin/papermill run.ipynb results/run.ipynb --cwd . --kernel python3

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(PY) bench/bench_engine.py

clean:
	rm -rf results
