# kita: the two commands are `make run` and `make test` (see README.md).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install run serve test test-sqlite test-postgres lint format translations \
        translations-check translations-compile bench system-deps clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,postgres]'
	touch $(STAMP)

install: $(STAMP) translations-compile

translations-compile: $(STAMP)
	$(VENV)/bin/kita translations compile

# Development server on http://127.0.0.1:5000 with the demo city. Plain HTTP on localhost, so
# the session cookie is not marked Secure here; production (behind TLS) keeps the default.
run: install
	$(VENV)/bin/kita init
	$(VENV)/bin/kita demo
	KITA_COOKIE_SECURE=$${KITA_COOKIE_SECURE:-0} $(VENV)/bin/kita serve --bind 127.0.0.1:5000 --workers 2

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

translations: $(STAMP)
	$(VENV)/bin/kita translations update

translations-check: $(STAMP)
	$(VENV)/bin/kita translations check

test: install lint translations-check test-sqlite test-postgres

test-sqlite: install
	$(PY) -m pytest -n 2 -p no:cacheprovider

# Runs when KITA_TEST_DATABASE_URL is set or a PostgreSQL server answers on 127.0.0.1:5432.
test-postgres: install
	@url="$${KITA_TEST_DATABASE_URL:-}"; \
	if [ -z "$$url" ] && $(PY) -c "import socket,sys; s=socket.socket(); s.settimeout(1); sys.exit(s.connect_ex(('127.0.0.1',5432)))"; then url="$(PG_URL)"; fi; \
	if [ -z "$$url" ]; then echo "PostgreSQL not reachable: skipping the PostgreSQL run"; exit 0; fi; \
	echo "== PostgreSQL run against $$url"; \
	KITA_TEST_DATABASE_URL="$$url" $(PY) -m pytest -n 2 -p no:cacheprovider

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
