# FlowForge: `make run` starts everything on the embedded default; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A stamp of our own: `touch .venv/bin/python` would follow the venv's symlink and change
# the system interpreter's file (or fail, for anyone but root).
INSTALLED := $(VENV)/.installed
PORT ?= 8000
export PATH := $(CURDIR)/$(BIN):$(PATH)
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/flowforge
EMBEDDED := env -u DATABASE_URL -u CELERY_BROKER_URL

.PHONY: run test lint install clean-var bench

$(INSTALLED): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(INSTALLED)

install: $(INSTALLED)

# Embedded default: SQLite and a filesystem broker under var/, no servers needed. The web
# server answers on http://127.0.0.1:$(PORT) (honcho numbers its processes from -p). Log
# lines for a person, not JSON, unless LOG_FORMAT says otherwise.
run: export LOG_FORMAT ?= text
run: install
	$(EMBEDDED) $(BIN)/python manage.py migrate --noinput
	$(EMBEDDED) $(BIN)/python manage.py submit_dag examples/
	$(EMBEDDED) $(BIN)/python manage.py trigger_dag etl-pipeline
	$(EMBEDDED) $(BIN)/python manage.py trigger_dag word-count
	$(EMBEDDED) $(BIN)/honcho start -f Procfile.embedded -p $(PORT) || [ $$? -eq 130 ]  # Ctrl-C

test: install
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/python -m pytest $(PYTEST_ARGS)

# Benchmarks on the local PostgreSQL and Redis (their own database and Redis database):
# results to bench/results/. Options go in ARGS, e.g. ARGS="--quick" or ARGS="--only chain".
bench: install
	$(BIN)/python -m bench.run $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean-var:
	rm -rf var/
