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

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

bench: setup
	scripts/ensure-redis
	$(PY) -m bench

bench-quick: setup
	scripts/ensure-redis
	$(PY) -m bench --quick

soak: setup
	scripts/ensure-redis
	$(PY) -m pytest tests/test_soak.py -m soak -s
