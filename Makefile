# The one source of commands: the README and .ci/run call these targets.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup compiled demo run test test-redis8 lint fmt typecheck bench check-config image-test clean

## The install builds the per-lead modules with mypyc (setup.py; a C compiler and Python's
## headers needed, ~1 min): LEADGATE_COMPILE=0 make setup builds plain Python instead.
$(STAMP): pyproject.toml setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## A compiled module whose source changed since its build is rebuilt (gateway/build.py
## refuses to import a stale one): the targets that run the gateway depend on this.
compiled: $(STAMP)
	@$(BIN)/python -c "import gateway" 2>/dev/null || \
	{ echo "rebuilding the compiled modules (setup.py)"; $(BIN)/pip install --quiet --no-deps -e .; }
	@[ "$${LEADGATE_COMPILE:-}" = 0 ] || $(BIN)/python -c "import gateway; gateway.COMPILED_MODULES or \
	print('note: plain Python build, no C compiler or Python headers (docs/architecture.md)')"

setup: compiled

## The gateway on its embedded store, a realistic mix of leads posted, a table of what happened.
demo: compiled
	$(BIN)/leadgate demo

## The gateway alone, on the example config (LEADGATE_REDIS_URL unset: embedded store).
run: compiled
	$(BIN)/leadgate serve --config examples/leadgate.yaml

## The whole test suite; the fixtures start their own redis-server and Prometheus (both
## installed from Debian's packages if missing). In TEST_WORKERS processes (pytest-xdist):
## the suite mostly waits on the processes it starts, so twice CI's 2 cores still pays;
## `make test TEST_WORKERS=0` runs it in one process, as plain `pytest` does.
TEST_WORKERS ?= 4
test: compiled
	@command -v redis-server >/dev/null || ./.ci/install-redis
	@command -v prometheus >/dev/null || ./.ci/install-prometheus
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal

## The tests that talk to Redis, again on Redis 8 (Debian's is 7.0): the stores' contract, the
## decisions, the delivery queue, feedback, Redis Cluster, outages, the version refusals, and
## the per-field expiry measurement. .ci/install-redis8 fetches the redis-server; CI runs
## this after `make test`.
## Not the tests that keep Redis busy for a wall-clock time (test_pipeline_deadline.py, a slow
## Redis in test_redis_outage.py; the client's deadlines they test do not depend on the
## server): Redis 8 scripts have no wall clock (TIME stands still for a script's whole run),
## and CPU time (os.clock) runs slower than the wall on a loaded machine.
REDIS8_TESTS ?= tests/storage tests/decision tests/delivery tests/quality tests/cluster \
	tests/app/test_redis_outage.py tests/app/test_redis_too_old.py tests/bench/test_field_expiry.py
test-redis8: compiled
	@command -v redis-server >/dev/null || ./.ci/install-redis
	@bin="$$(cd "$$(dirname "$$(./.ci/install-redis8)")" && pwd)" && \
	PATH="$$bin:$$PATH" LEADGATE_TEST_EXPECT_REDIS=8. \
	LEADGATE_TEST_REDIS_SERVER_74="$$bin/redis-server" \
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal $(REDIS8_TESTS) \
	--ignore=tests/storage/test_pipeline_deadline.py \
	--deselect "tests/app/test_redis_outage.py::test_a_503_after_a_lost_reply_says_so_and_a_keyed_retry_gets_the_real_answer"

lint: $(STAMP)
	$(BIN)/ruff check gateway tests bench deploy tools setup.py
	$(BIN)/ruff format --check gateway tests bench deploy tools setup.py
	$(BIN)/mypy
	$(BIN)/mypy --strict deploy/image/image_test.py deploy/compose/crm_receiver.py setup.py

fmt: $(STAMP)
	$(BIN)/ruff format gateway tests bench deploy tools
	$(BIN)/ruff check --fix gateway tests bench deploy tools

check-config: $(STAMP)
	$(BIN)/leadgate check-config examples/leadgate.yaml

## Realistic load beside its baselines and ceilings (BENCHMARKS.md); e.g. make bench SCENARIOS="single c1000".
bench: compiled
	$(BIN)/python -m bench --ceilings $(SCENARIOS)

## Builds the Dockerfile with podman (on a local stand-in of the python base image: no Docker
## Hub here) and runs the image and the compose stack's runnable services for real
## (deploy/image/image_test.py). Installs podman, runc and debootstrap if missing.
image-test: compiled
	./.ci/install-podman
	$(BIN)/python deploy/image/image_test.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build gateway/_compiled.json
	find gateway -name '*.so' -delete
