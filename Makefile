# Early Help Hub. `make run` and `make test` are all a newcomer needs.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# Parallel test processes: the suite mostly waits (group joins, service start-up), so more
# workers than cores pays; each worker has its own broker, each test its own databases.
# With 3, a quiet run used 1.5 of the 2 cores on average, and after the schemathesis
# lanes finished (about 8 minutes in) the main suite's 3 workers ran on alone, mostly
# waiting: a fourth fills that time.
# Meanwhile the schemathesis modules of tests/api run, TEST_API_LANES at a time, each in a
# process of its own: they must not run under xdist (see tests/suite.py).
TEST_WORKERS ?= 4
TEST_API_LANES ?= 2

.PHONY: install run test test-fast lint format contracts bench chaos clean images deploy-check

# Reinstall only when the project's dependencies change.
$(INSTALLED): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is needed (set PYTHON=...)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(INSTALLED)

install: $(INSTALLED)

## run: the whole hub on the embedded defaults (broker, SQLite under var/, services 8001-8004)
run: $(INSTALLED)
	$(BIN)/earlyhelp dev

## test: the whole suite (unit, service, end-to-end, faults) on SQLite and, when reachable, PostgreSQL
test: $(INSTALLED)
	$(BIN)/python -m tests.suite --workers $(TEST_WORKERS) --api-lanes $(TEST_API_LANES)

## test-fast: everything but the end-to-end tests that start the four services
test-fast: $(INSTALLED)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --ignore=tests/api -m "not e2e"

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## contracts: regenerate JSON Schema and AsyncAPI in contracts/ from the event models
contracts: $(INSTALLED)
	$(BIN)/python -m hub.contracts.generate

## bench: throughput and latency figures, printed and written to docs/benchmarks.md
bench: $(INSTALLED)
	@command -v wrk >/dev/null 2>&1 || { apt-get install -y -qq wrk >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq wrk); }
	$(BIN)/python -m tests.bench

## chaos: the four services on a PostgreSQL of its own under injected faults; prints what was
## lost, duplicated or differs from a rebuild and writes it to docs/reliability.md (not in `test`)
chaos: $(INSTALLED)
	$(BIN)/python -m tests.chaos

## images: the four service images from deploy/Dockerfile, with docker or podman (whichever
## answers). PYTHON_IMAGE is the base: the official slim image by default; `debian` builds one
## from Debian's packages (deploy/base/build-base.sh) where no registry is reachable.
PYTHON_IMAGE ?= python:3.11-slim-bookworm
images:
	PYTHON_IMAGE=$(PYTHON_IMAGE) deploy/images.sh

## deploy-check: the whole stack in containers, checked as an operator would, then torn down
## (deploy/check/deploy_check.py; the base defaults to `debian` here, see docs/operations.md).
DEPLOY_CHECK_PYTHON_IMAGE ?= debian
deploy-check: $(INSTALLED)
	PYTHON_IMAGE=$(DEPLOY_CHECK_PYTHON_IMAGE) $(BIN)/python deploy/check/deploy_check.py

clean:
	rm -rf var .pytest_cache
