# gangplace: `make run` sets everything up and starts the service; `make test` sets up and tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-installed
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba_cache
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: all run test test-fast bench bench-quick bench-full bench-cpsat native proto clean example load

all: test

# Create the virtualenv, install the project with its dev extras, (re)build the native core.
# Idempotent: dependencies are reinstalled only when pyproject.toml changes; the Cython core is
# rebuilt only when csrc/ changes.
$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel "numpy>=2.0,<2.6" "cython>=3.0"
	$(PY) -m pip install -q --no-build-isolation -e ".[dev]"
	touch $@

$(VENV): $(STAMP) native

native: $(STAMP)
	$(PY) setup.py -q build_ext --inplace

# binds are journaled to $XDG_STATE_HOME/gangplace/synthetic-dgx-h100-2048gpus-fill0.6-seed1 (the banner's
# `state` line); a second `make run` while one runs refuses, naming it (docs/service.md)
run: $(VENV)
	$(VENV)/bin/gangplace serve --synthetic dgx-h100 --gpus 2048

example: $(VENV)
	$(VENV)/bin/gangplace place --cluster examples/cluster.yaml --gang examples/gang.yaml --output table

test: $(VENV)
	$(PY) -m pytest -q tests

test-fast: $(VENV)
	$(PY) -m pytest -q -m "not slow" tests

bench: $(VENV)
	$(PY) -m pytest -q benchmarks --benchmark-only --benchmark-columns=min,median,mean,max,rounds
	$(PY) benchmarks/bench_memory.py
	$(VENV)/bin/gangplace bench --quick --out reports/bench-quick

bench-full: $(VENV)
	$(VENV)/bin/gangplace bench --full --out reports/bench-full

# CP-SAT / auto / batch / preemption tables of docs/benchmarks.md ("CP-SAT and auto"), ~5 min
bench-cpsat: $(VENV)
	$(PY) benchmarks/bench_cpsat.py

# 60 s of concurrent HTTP extender + gRPC load on a 16,384-GPU synthetic cluster (loopback only,
# stops by itself); figures in docs/reliability.md.
load: $(VENV)
	$(PY) benchmarks/load_test.py --duration 60 --gpus 16384 --out reports/load/closed-loop.json
	$(PY) benchmarks/load_test.py --duration 60 --gpus 16384 --rate 250 --out reports/load/rate-250.json

proto: $(VENV)
	$(PY) proto/generate.py

clean:
	rm -rf build $(VENV) engine/*.so csrc/*.c .numba_cache
