# The two commands of the README: `make demo` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint docs install clean bench bench-lambda bench-images bench-flows bench-dashboard bench-ecs bench-limit bench-postgres bench-dispatch screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -m "not slow"

# The reliability and security suite at full size: 5,000 runs, 100 clients for 60 s, 200 fuzz examples
# per endpoint, 12 server kills. Takes roughly 10 minutes on 2 cores.
test-slow: $(STAMP)
	PUSHPOOL_EXACTLY_ONCE_RUNS=5000 PUSHPOOL_LOAD_CLIENTS=100 PUSHPOOL_LOAD_SECONDS=60 \
	PUSHPOOL_FUZZ_EXAMPLES=200 PUSHPOOL_CRASH_RUNS=60 PUSHPOOL_CRASH_KILLS=12 \
	$(BIN)/python -m pytest -q -p no:cacheprovider --timeout 1800 tests/reliability tests/security

# pushpool vs Prefect 3.8 on this machine, side by side (Prefect goes into .bench/prefect-venv); prints one
# markdown table and writes it into docs/benchmarks.md; then what tasks and logs cost inside a flow
# (bench-flows), each dashboard page at scale (bench-dashboard) and the other bench-* measures. About 50
# minutes on 2 cores.
bench: $(STAMP)
	$(BIN)/python -m tests.benchmarks.run --update-docs
	$(BIN)/python -m tests.benchmarks.flow_overhead --update-docs
	$(BIN)/python -m tests.benchmarks.dashboard_pages --update-docs
	$(BIN)/python -m tests.benchmarks.ecs_throttled --update-docs
	$(BIN)/python -m tests.benchmarks.limit --update-docs
	$(BIN)/python -m tests.benchmarks.postgres --update-docs
	$(BIN)/python -m tests.benchmarks.dispatch_scale --update-docs
	$(BIN)/python -m tests.benchmarks.metrics_overhead --update-docs
	$(BIN)/python -m tests.benchmarks.dynamodb_run_cost --update-docs

# Cold start of the Lambda control plane: handler import time, first-invocation build time, package size; then
# the DynamoDB write and read units of a run's life on the Lambda handlers (moto on 127.0.0.1), which it writes
# into docs/benchmarks.md. About a minute.
bench-lambda: $(STAMP)
	$(BIN)/python -m tests.benchmarks.lambda_cold_start --update-docs
	$(BIN)/python -m tests.benchmarks.dynamodb_run_cost --update-docs

# Daemonless image build + push against a local registry: cold, unchanged, one file changed.
bench-images: $(STAMP)
	$(BIN)/python -m tests.benchmarks.image_build

# What tasks and shipped logs cost inside a flow (10,000 tasks, 100,000 printed lines), against an embedded
# server on 127.0.0.1; writes its table into docs/benchmarks.md. About 15 seconds.
bench-flows: $(STAMP)
	$(BIN)/python -m tests.benchmarks.flow_overhead --update-docs

# Each dashboard page's time on an embedded server holding 100,000 runs, 1,000 deployments and 10,000 events;
# writes its table into docs/benchmarks.md. About 3 minutes (most of it seeding).
bench-dashboard: $(STAMP)
	$(BIN)/python -m tests.benchmarks.dashboard_pages --update-docs

# 1,000 runs due at once on one ECS pool, through the strict AWS fake's RunTask (20/s) and RegisterTaskDefinition
# (1/s) limits: exactly once, none crashed, the submission rate against the limit. About 2 minutes.
bench-ecs: $(STAMP)
	$(BIN)/python -m tests.benchmarks.ecs_throttled --update-docs

# pushpool beside the limit of its stack (a reference app on the same FastAPI, uvicorn and SQLite doing only
# the key lookup, body parsing and row writes any such API must), interleaved three times; writes its table
# into docs/benchmarks.md. About 4 minutes.
bench-limit: $(STAMP)
	$(BIN)/python -m tests.benchmarks.limit --update-docs

# 1,000 and 10,000 runs due in the same second: lateness and the dispatch's cost per due run (issue 28).
bench-dispatch: $(STAMP)
	$(BIN)/python -m tests.benchmarks.dispatch_scale --update-docs

# The embedded server beside one and four replicas on PostgreSQL (a private cluster started on 127.0.0.1).
bench-postgres: $(STAMP)
	$(BIN)/python -m tests.benchmarks.postgres --update-docs

docs: $(STAMP)
	$(BIN)/typer pushpool.cli.main utils docs --name pushpool --output docs/cli.md

# The dashboard's pictures in docs/images/, taken by its browser tests (headless Chromium, installed with apt).
screenshots: $(STAMP)
	DASHBOARD_SCREENSHOTS=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/control_plane/web/test_browser.py

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache
