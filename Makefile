# Two commands on a fresh machine: `make run` and `make test`. Everything else is for development.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 1

.PHONY: run test bench lint migrate soak purge rebuild-payments clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Stamp files: reinstall only when a requirements file changes.
$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

$(VENV)/.installed-bench: requirements-bench.txt $(VENV)/.installed
	$(BIN)/pip install -q -r requirements-bench.txt
	touch $@

# With WORKERS > 1, ops/serve.py gives uvicorn a fresh PROMETHEUS_MULTIPROC_DIR (unless one is given) and
# removes it at exit. SIGTERM or SIGINT to make's process group, to ops/serve.py or to uvicorn, or SIGTERM
# to make, stops it.
run: $(VENV)/.installed migrate
	@$(BIN)/python -m ops.serve $(BIN)/uvicorn main:app --host $(HOST) --port $(PORT) --workers $(WORKERS)

# Apply pending migrations to DATABASE_URL. The service also does this at start-up (MIGRATE_ON_START),
# under the same lock, so running both at once is safe.
migrate: $(VENV)/.installed
	$(BIN)/alembic upgrade head

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

# The long reliability runs (crash, database outage, two instances, 1-512 connections, schemathesis at
# length), with their measured figures; killed at 15 minutes. PostgreSQL cases need TEST_POSTGRES_URL.
soak: $(VENV)/.installed-dev
	timeout 900 $(BIN)/python -m pytest -m soak tests/soak -rP

# ruff, then mypy (strict, every module: see pyproject.toml); both always run, and any finding fails.
lint: $(VENV)/.installed-dev
	@status=0; $(BIN)/ruff check . || status=1; $(BIN)/mypy || status=1; exit $$status

bench: $(VENV)/.installed-bench
	$(BIN)/python bench/run.py $(if $(QUICK),--quick,)

# Recompute every payment's state from the stored events (DATABASE_URL), in one transaction.
rebuild-payments: $(VENV)/.installed
	$(BIN)/python -m cli rebuild-payments

# make purge DAYS=90 [REDACT=1]: delete (or empty the raw body of) events received more than DAYS days
# ago, a batch per transaction; deliveries keep being stored meanwhile.
purge: $(VENV)/.installed
	@test -n "$(DAYS)" || { echo "usage: make purge DAYS=90 [REDACT=1]" >&2; exit 2; }
	$(BIN)/python -m cli purge --days $(DAYS) $(if $(REDACT),--redact,)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
