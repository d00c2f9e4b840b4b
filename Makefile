# The documented paths: `make run` starts ClawSite, `make test` runs the tests.
PY := .venv/bin/python
POSTGRES_TEST_URL ?= postgres://postgres@127.0.0.1:5432/test
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup run test test-fast lint bench bench-quick soak

setup:
	scripts/setup

run:
	scripts/run

test: setup
	scripts/setup-mcp-clients
	scripts/ensure-redis
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) -m pytest $(PYTEST_ARGS)
	@if $(PY) scripts/postgres-answers "$(POSTGRES_TEST_URL)"; then \
		echo "Again on PostgreSQL ($(POSTGRES_TEST_URL)):"; \
		DATABASE_URL="$(POSTGRES_TEST_URL)" $(PY) -m pytest -m postgres $(PYTEST_ARGS); \
	else echo "PostgreSQL does not answer at $(POSTGRES_TEST_URL): its test pass is skipped."; fi
	scripts/test-py312 $(PY312_TESTS)

# In-process tests that import nearly every module and run the tools, the store and the worker:
# run again under Python 3.12 (scripts/test-py312) when .venv is another version.
PY312_TESTS := tests/test_patterns.py tests/test_tools_files.py tests/test_path_escape.py \
	tests/test_store.py tests/test_hot_path.py tests/test_api_tasks.py tests/test_worker.py \
	tests/test_openapi.py tests/test_cache.py

# Checks that block (CI runs them before the tests): ruff's rules and format, and mypy with
# django-stubs (pinned in requirements.txt).
lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy .

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
