# gangplace: `make run` sets everything up and starts the service; `make test` sets up and tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-installed
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba_cache
export PYTHONDONTWRITEBYTECODE := 1
# defined before `test`, whose prerequisites use it (make expands them when it reads the rule)
HAVE_GO := $(shell command -v go 2>/dev/null)

.PHONY: all run test test-fast test-e2e bench bench-quick bench-full bench-cpsat bench-kube native proto clean example load kube kube-check image image-scheduler

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

# With Go on PATH, `make test` first builds the control plane (`make kube`) and checks the Go
# module, and then pytest runs the e2e tests too (tests/e2e/, skipped without .kube/bin).
test: $(VENV) $(if $(HAVE_GO),kube kube-check)
	$(PY) -m pytest -q tests

test-e2e: $(VENV) kube
	$(PY) -m pytest -q -m e2e tests/e2e

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

# The container image (Dockerfile) with buildah, on a Debian base made by mmdebstrap unless BASE=...
# is given; needs `apt-get install -y buildah podman mmdebstrap` (docs/image.md).
image:
	deploy/image/build.sh

# The gangplace-scheduler image (deploy/image/Dockerfile.scheduler): the `make kube` binary alone
image-scheduler: kube
	deploy/image/build.sh scheduler

# ---- Kubernetes v1.36.3 control plane for the e2e tests (kube/, docs/e2e.md)
# One multi-call binary; links named after each component run it as that component. Rebuilt only
# when the module's files change; Go's own caches (~/go/pkg/mod, ~/.cache/go-build) make a rebuild
# after a change take about a minute instead of ~6.
KUBE_BIN := .kube/bin
KUBE_COMPONENTS := kube-apiserver kube-scheduler kube-controller-manager kubectl etcd gangplace-scheduler
KUBE_VERSION := v1.36.3
KUBE_LDFLAGS := -s -w -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36
KUBE_SRC := kube/go.mod kube/go.sum $(shell find kube -name '*.go' -not -name '*_test.go' 2>/dev/null)
# the same flags for build, vet and test, so they share the compiled dependencies in the cache
KUBE_GOENV := CGO_ENABLED=0 GOFLAGS=-trimpath

kube: $(KUBE_BIN)/kube $(addprefix $(KUBE_BIN)/,$(KUBE_COMPONENTS))

$(KUBE_BIN)/kube: $(KUBE_SRC)
	mkdir -p $(KUBE_BIN)
	cd kube && $(KUBE_GOENV) go build -ldflags "$(KUBE_LDFLAGS)" -o ../$@.tmp ./cmd/kube
	mv $@.tmp $@

$(addprefix $(KUBE_BIN)/,$(KUBE_COMPONENTS)): | $(KUBE_BIN)/kube
	ln -sfn kube $@

kube-check:
	@test -z "$$(gofmt -l kube)" || { echo "gofmt needed:"; gofmt -l kube; exit 1; }
	cd kube && $(KUBE_GOENV) go vet ./...
	cd kube && $(KUBE_GOENV) go test -vet=off ./...

# extender throughput on the real scheduler (docs/benchmarks.md), ~5 min
bench-kube: $(VENV) kube
	$(PY) benchmarks/bench_kube.py

# Python stubs into service/, Go into kube/gen/gangplacev1 (the Go protoc plugins are go-installed
# at pinned versions into .kube/tools/ the first time)
proto: $(VENV)
	$(PY) proto/generate.py
	$(PY) proto/generate.py --go

clean:
	rm -rf build $(VENV) engine/*.so csrc/*.c .numba_cache .kube
