# The documented paths: `make run` starts ClawSite, `make test` runs the tests.
PY := .venv/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup run test test-fast lint bench bench-quick soak

setup:
	scripts/setup

run:
	scripts/run

test: setup
	scripts/ensure-redis
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) -m pytest $(PYTEST_ARGS)
	@# The hot path's SQL again on PostgreSQL, when one answers (CI has one; a laptop may not).
	@if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then \
		DATABASE_URL=$${PG_TEST_URL:-postgres://postgres@127.0.0.1:5432/test} $(PY) -m pytest tests/test_store.py; \
	else echo "PostgreSQL not answering at 127.0.0.1:5432: store tests ran on SQLite only"; fi

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

# The benchmarks run from their own environment (.venv-bench: the peers Celery, Dramatiq, Huey
# and the bench's tools, never installed into .venv). BENCH_ARGS: e.g. --only store,http --keep.
bench:
	bench/setup-venv
	scripts/ensure-redis
	.venv-bench/bin/python -m bench $(BENCH_ARGS)

bench-quick:
	bench/setup-venv
	scripts/ensure-redis
	.venv-bench/bin/python -m bench --quick $(BENCH_ARGS)

soak: setup
	scripts/ensure-redis
	$(PY) -m pytest tests/test_soak.py -m soak -s
