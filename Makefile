# Two commands on a fresh clone (see README):  make demo  |  make test
# The venv is created once; torch is pinned to the CPU wheel (no CUDA download).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt -e ".[test,pyod]"
	touch $(STAMP)

demo: install
	$(VENV)/bin/msda-widgets demo

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) benchmarks/bench_engine.py
	$(PY) benchmarks/bench_explain.py
	$(PY) benchmarks/bench_dashboard.py
	$(PY) benchmarks/bench_profile.py
	$(PY) benchmarks/bench_skab.py
	$(PY) benchmarks/bench_reliability.py
	$(PY) benchmarks/bench_voila_memory.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build dist *.egg-info
