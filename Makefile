# RecruitMail: `make run` for the embedded setup, `make test` for the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
# make test's first pass when DATABASE_URL is unset: the local PostgreSQL server.
TEST_DATABASE_URL := postgres://postgres@127.0.0.1:5432/recruitmail

.PHONY: run test lint migrations-check peers messages screenshots clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "RecruitMail needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,dev,bench,production]'
	touch $@ $(STAMP_RUN)

## run: web app, Celery worker and scheduler on SQLite with a demo organisation (Ctrl-C stops all)
run: export DEBUG ?= true
run: $(STAMP_RUN)
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py demo_setup
	$(BIN)/python manage.py demo_mail
	@echo "  Open http://$${RECRUITMAIL_HOST:-127.0.0.1}:$${RECRUITMAIL_PORT:-8000}/ and sign in with the login above."
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile.dev

## peers: install the real test peers (Dovecot, Chromium) from Debian's packages when missing
peers:
	bash scripts/install-test-peers.sh

## test: install what the tests need and run them all, on PostgreSQL (DATABASE_URL, the local
## server by default), then on the embedded default (SQLite)
test: $(STAMP_TEST) peers
	$(MAKE) --no-print-directory lint migrations-check
	DATABASE_URL="$${DATABASE_URL:-$(TEST_DATABASE_URL)}" $(BIN)/python -m pytest
	@echo "== the same suite again on the embedded default (SQLite), but for the benchmarks' smoke"
	@echo "   runs (their own PostgreSQL databases either way) and the tests of what the migrations"
	@echo "   build only on PostgreSQL (marked postgresql_schema): both ran above"
	env -u DATABASE_URL -u CELERY_BROKER_URL $(BIN)/python -m pytest -q --ignore=tests/bench \
		-m "not postgresql_schema"

lint: $(STAMP_TEST)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

migrations-check: $(STAMP_TEST)
	DEBUG=true env -u DATABASE_URL $(BIN)/python manage.py makemigrations --check --dry-run

## messages: refresh the Japanese catalogue from the code (then translate) and compile it
messages: $(STAMP_TEST)
	DEBUG=true $(BIN)/python manage.py makemessages -l ja --no-obsolete --ignore=.venv --ignore=var --ignore=bench --ignore=tests
	DEBUG=true $(BIN)/python manage.py makemessages -d djangojs -l ja --no-obsolete --ignore=.venv --ignore=var --ignore=bench --ignore=tests
	DEBUG=true $(BIN)/python manage.py compilemessages -l ja --ignore=.venv

## screenshots: refresh docs/screenshots/ from a fresh demo in headless Chromium
screenshots: $(STAMP_TEST) peers
	$(BIN)/python scripts/screenshots.py

clean:
	rm -rf $(VENV) var
