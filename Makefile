# identity: the two commands of the Quick start are `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast mutate lint typecheck gen bench bench-check bench-peer bench-scale clean

install: $(STAMP) node_modules/.bin/buf  ## .venv with the service and its dev tools, plus buf

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

node_modules/.bin/buf: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: install  ## migrate, then run the gRPC server (:50051) and Envoy (:8080)
	scripts/dev-stack

test: install  ## the whole suite against real PostgreSQL and Redis
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

test-fast: install  ## domain and service tests on in-memory fakes: no database, no tools
	$(PY) -m pytest -p no:cacheprovider tests/unit -m "not tools" $(PYTEST_ARGS)

mutate: install  ## mutation testing of the security-critical modules (not part of `make test`)
	$(PY) scripts/mutate $(MUTATE_ARGS)

lint: install
	$(VENV)/bin/ruff check src tests scripts
	scripts/buf lint

typecheck: install
	$(VENV)/bin/mypy

gen: install  ## regenerate generated/ from protos/
	$(PY) scripts/gen-protos

bench: install  ## every RPC against its ceiling, measured in the same run (JSON in build/)
	$(PY) scripts/bench/suite.py

bench-check: install  ## CheckPermission against the echo ceiling, p99 at half its rate (BENCH_ARGS=--metrics: metrics on vs off)
	$(PY) scripts/bench/check_permission.py $(BENCH_ARGS)

bench-peer: install  ## identity.peer's verification and ValidateToken against bare PyJWT
	$(PY) scripts/bench/peer_verify.py

bench-scale: install  ## the permission cache with 10k roles, 300k users, 1M assignments vs a small catalogue (BENCH_ARGS for smaller runs)
	$(PY) scripts/bench/scale.py $(BENCH_ARGS)

clean:
	rm -rf build dist .dev mutants *.egg-info
