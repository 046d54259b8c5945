# riskwatch: `make run` and `make test` work on a machine with only Python 3.11, pip and git.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
RUNTIME := $(VENV)/.runtime
STAMP  := $(VENV)/.installed
API_PORT ?= 8000

.PHONY: run test install bench clean demo-replay

# `make run` installs what riskwatch runs on; `make test` adds the test tools. --no-compile: Python
# compiles a module when it is first imported instead of pip compiling every file of every package
# (a fresh `make run` spent 43 s in pip with it, 27 s without, on 2026-12-07).
VENV_UP := $(PYTHON) -m venv $(VENV) && $(PY) -m pip install --quiet --upgrade pip

$(RUNTIME): pyproject.toml
	$(VENV_UP)
	$(PY) -m pip install --quiet --no-compile -e .
	touch $(RUNTIME)

# one install for both on a fresh clone (.ci/run): the runtime, then the test tools, resolved twice,
# took longer
$(STAMP): pyproject.toml
	$(VENV_UP)
	$(PY) -m pip install --quiet --no-compile -e '.[dev]'
	touch $(RUNTIME) $(STAMP)

install: $(STAMP)

# Broker, Redis, worker, API and a live simulated feed; Ctrl-C stops all of it.
run: $(RUNTIME)
	$(PY) -m riskwatch.cli up --demo --api-port $(API_PORT)

# The offline path: simulate, replay through the engine, summarise against the hidden truth.
demo-replay: $(RUNTIME)
	mkdir -p .data
	$(PY) -m riskwatch.cli simulate --entities 2000 --events 100000 --seed 7 --out .data/demo.jsonl --truth .data/demo-truth.jsonl
	$(PY) -m riskwatch.cli replay .data/demo.jsonl --out .data/demo-outputs.jsonl --snapshot-at 2026-03-01T00:00:00+08:00 --snapshot-out .data/demo-snapshot.csv
	$(PY) bench/demo_summary.py .data

# Three test processes (each with its own broker and Redis): the integration tests mostly wait on workers,
# brokers and group joins. From a fresh clone on 2026-12-07, one after the other: 15 min 49 s with two,
# 13 min 48 s with three (10 min 18-23 s with three in a faster hour). Two were the default again for a
# while: with three, tests/integration/test_ticks.py failed once, a flake of the test's own (it stopped
# a worker before it had stored its last round; see docs/history.md, thirty-first session).
# .ci/run must stay under 20 minutes. TEST_PROCESSES=0 runs them in this process.
TEST_PROCESSES ?= 3
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_PROCESSES) --dist worksteal --durations=20

bench: $(STAMP)
	$(PY) bench/engine.py
	$(PY) bench/nab.py --nab ../shared/data/nab --out results/
	$(PY) bench/inspections.py --city all
	$(PY) bench/stream.py
	$(PY) bench/alerts.py
	$(PY) bench/ingest.py

clean:
	rm -rf $(VENV) .data results .pytest_cache .hypothesis
