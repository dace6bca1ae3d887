# The README's two commands: `make report` (the main job) and `make test` (the whole suite).
# Both create or refresh .venv from constraints.txt when pyproject.toml or constraints.txt changed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# The CPU build of torch 2.13.0 lies in /opt/wheels on these machines; elsewhere pip uses its index.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels)
OUT ?= report

.PHONY: report lessons test lint check bench mutation venv clean
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(FIND_LINKS) -c constraints.txt -e '.[test,bench,jax]'
	touch $@

report: venv
	$(PY) -m compare report --out $(OUT)

# The lecture's lessons as figures, each run on manual and torch (~20 s on 2 quiet cores): lessons/lessons.html, .md, .json
lessons: venv
	$(PY) -m compare lessons --out lessons

test: venv
	$(PY) -m pytest -q -n 2

lint: venv
	$(PY) -m ruff check .

check: venv
	$(PY) -m compare check

bench: venv
	$(PY) benchmarks/bench.py

# Mutation testing of manual/ (not part of CI; ~40 minutes on 2 cores): mutmut's own results in
# mutants/, then the score with the equivalent mutants of tests/mutation_equivalents.txt set aside.
mutation: $(VENV)/.installed-mutation
	rm -rf mutants
	$(PY) -m mutmut run --max-children 2 || true
	$(PY) scripts/mutation_score.py
$(VENV)/.installed-mutation: $(VENV)/.installed
	$(PY) -m pip install --quiet $(FIND_LINKS) -c constraints.txt -e '.[test,bench,jax,mutation]'
	touch $@

clean:
	rm -rf $(VENV) report lessons mutants
