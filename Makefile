# The one source of commands: the README and .ci/run call these targets.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo run test lint fmt typecheck bench check-config clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## The gateway on its embedded store, a realistic mix of leads posted, a table of what happened.
demo: $(STAMP)
	$(BIN)/leadgate demo

## The gateway alone, on the example config (LEADGATE_REDIS_URL unset: embedded store).
run: $(STAMP)
	$(BIN)/leadgate serve --config examples/leadgate.yaml

## The whole test suite; the fixtures start their own redis-server and Prometheus (both
## installed from Debian's packages if missing).
test: $(STAMP)
	@command -v redis-server >/dev/null || ./.ci/install-redis
	@command -v prometheus >/dev/null || ./.ci/install-prometheus
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format gateway tests bench
	$(BIN)/ruff check --fix gateway tests bench

check-config: $(STAMP)
	$(BIN)/leadgate check-config examples/leadgate.yaml

## Realistic load beside its baselines and ceilings (BENCHMARKS.md); e.g. make bench SCENARIOS="single c1000".
bench: $(STAMP)
	$(BIN)/python -m bench --ceilings $(SCENARIOS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
