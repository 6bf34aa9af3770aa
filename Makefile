# kita: the two commands are `make run` and `make test` (see README.md).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
# Browser tests run in their own pytest process: Playwright's sync API keeps an event loop
# running in the worker, which the asyncio-based push tests cannot share.
PYTEST := $(PY) -m pytest -n 2 -p no:cacheprovider
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install run serve test test-sqlite test-postgres lint format translations \
        translations-check translations-compile bench system-deps node-deps clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,postgres]'
	touch $(STAMP)

install: system-deps node-deps $(STAMP) translations-compile

# Debian packages the app and the tests need: WeasyPrint's Pango and HarfBuzz (subset: fast font
# embedding), fonts covering Latin, Cyrillic and Arabic for the PDF reports (kita/reports), and
# poppler-utils (pdftotext, pdffonts, pdfimages) to read them back in tests, and chromium for the
# browser tests (tests/browser drive /usr/bin/chromium through Playwright; no browser download)
# with dbus-daemon (the private bus of tests/desktop_notifications.py).
# Installs only what is missing (apt-get as root, else through sudo).
SYSTEM_PACKAGES := libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 \
                   fonts-dejavu-core fonts-noto-core poppler-utils chromium dbus-daemon

system-deps:
	@missing=""; \
	for pkg in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  echo "Installing Debian packages:$$missing"; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# npm packages for the tests and benchmarks only: the push-service emulator web-push-testing,
# the web-push library as a benchmark peer, and axe-core, which the browser tests inject into
# pages to check accessibility. `npm ci` installs exactly package-lock.json,
# again whenever it changes. The app itself needs no Node.js.
NODE_STAMP := node_modules/.installed

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

node-deps: $(NODE_STAMP)

translations-compile: $(STAMP)
	$(VENV)/bin/kita translations compile

# Development server on http://127.0.0.1:5000 with the demo city. Plain HTTP on localhost, so
# the session cookie is not marked Secure here; production (behind TLS) keeps the default.
run: install
	$(VENV)/bin/kita init
	$(VENV)/bin/kita demo
	@echo "Starting the background worker and the web server on http://127.0.0.1:5000 (Ctrl-C stops both)"
	KITA_COOKIE_SECURE=$${KITA_COOKIE_SECURE:-0}; export KITA_COOKIE_SECURE; \
	$(VENV)/bin/kita worker & worker=$$!; \
	trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	$(VENV)/bin/kita serve --bind 127.0.0.1:5000 --workers 2

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

test-sqlite: install node-deps
	$(PYTEST) -m "not browser"
	$(PYTEST) -m browser tests/browser

# Runs when KITA_TEST_DATABASE_URL is set or a PostgreSQL server answers on 127.0.0.1:5432.
test-postgres: install node-deps
	@url="$${KITA_TEST_DATABASE_URL:-}"; \
	if [ -z "$$url" ] && $(PY) -c "import socket,sys; s=socket.socket(); s.settimeout(1); sys.exit(s.connect_ex(('127.0.0.1',5432)))"; then url="$(PG_URL)"; fi; \
	if [ -z "$$url" ]; then echo "PostgreSQL not reachable: skipping the PostgreSQL run"; exit 0; fi; \
	echo "== PostgreSQL run against $$url"; \
	KITA_TEST_DATABASE_URL="$$url" $(PYTEST) -m "not browser" && \
	KITA_TEST_DATABASE_URL="$$url" $(PYTEST) -m browser tests/browser

bench: install node-deps
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
