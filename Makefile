# Two commands: `make run` serves the API on embedded defaults, `make test` runs ruff, mypy and pytest.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export AUDIENCEHUB_HOME ?= ./var

.PHONY: run test lint typecheck venv bench clean pgclients jdk

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,spark]'
	touch $(STAMP)

venv: $(STAMP)

# Java only when the server is asked to run Spark (AUDIENCEHUB_ENGINE=spark make run).
run: $(STAMP) $(if $(filter spark,$(AUDIENCEHUB_ENGINE)),jdk)
	$(BIN)/audiencehub serve  # host and port from AUDIENCEHUB_HOST, AUDIENCEHUB_PORT or PORT

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# The Query Service's tests drive the real PostgreSQL clients (Debian: psql in postgresql-client, pgbench in postgresql).
pgclients:
	@command -v psql >/dev/null && command -v pgbench >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client postgresql >/dev/null)

# The Spark engine (AUDIENCEHUB_ENGINE=spark, and the parity tests in make test) runs on Java 17 (Debian's JRE).
jdk:
	@command -v java >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null)

test: lint typecheck pgclients jdk
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py --rows 1000000
	$(BIN)/python benchmarks/ingest.py --rows 1000000 --engine spark
	$(BIN)/python benchmarks/sources.py --mib 256
	$(BIN)/python benchmarks/profile_access.py --profiles 1000000
	$(BIN)/python benchmarks/streaming.py
	$(BIN)/python benchmarks/segment.py --profiles 1000000
	$(BIN)/python benchmarks/export_query.py --profiles 1000000
	$(BIN)/python benchmarks/pgwire.py --rows 1000000

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
