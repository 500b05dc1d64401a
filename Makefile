# Stepwise: `make run` sets everything up and serves; `make test` runs the whole suite.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# Python keeps the compiled modules in __pycache__ (ignored by git). Where the environment says
# not to, every worker, command and test process compiles Stepwise's modules again: ~0.2 s of CPU
# each, which the suite's hundreds of workers and commands pay on two cores.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test lint bench setup system-deps clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

system-deps:
	@.ci/system-deps

setup: system-deps $(VENV)/.installed
	$(PY) manage.py migrate --noinput
	$(PY) manage.py stepwise_setup

run: setup
	$(PY) manage.py serve

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run

# Spread over TEST_PROCESSES pytest processes (pytest-xdist): the integration tests spend most
# of their time waiting on workers and subprocesses, so more processes than cores still pay.
TEST_PROCESSES ?= 3
test: $(VENV)/.installed
	@.ci/system-deps --browser
	$(MAKE) lint
	$(VENV)/bin/pytest -q -n $(TEST_PROCESSES) --dist worksteal

# Its own database and var/bench/state (never the data of `make run`); e.g. BENCH_ARGS="--quick --only chain50".
bench: system-deps $(VENV)/.installed
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf var/work var/cache
