# Estafette — the two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SYSTEM_PACKAGES := dovecot-imapd dovecot-lmtpd dovecot-submissiond nginx-light
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: run test lint format system-deps clean

# Debian packages: Dovecot for the demo and the tests, nginx to check its config.
system-deps:
	@if ! command -v /usr/sbin/dovecot >/dev/null || ! command -v /usr/sbin/nginx >/dev/null \
	   || ! dpkg -s dovecot-lmtpd dovecot-submissiond >/dev/null 2>&1; then \
	  echo "Installing $(SYSTEM_PACKAGES) (Debian)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    $(SYSTEM_PACKAGES) >/dev/null; \
	fi

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

# The embedded gateway in demo mode: SQLite, a local Dovecot with sample MSSanté mail.
# The demo trusts its own Dovecot CA; only the migration step needs the setting named.
run: system-deps $(VENV)/.installed
	ESTAFETTE_CA_BUNDLE=$${ESTAFETTE_CA_BUNDLE:-system} $(PY) -m flask --app mobile_api db upgrade
	$(PY) -m backend.demo.run --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Lint, then the whole suite: every test runs on SQLite and on PostgreSQL.
test: system-deps $(VENV)/.installed lint
	$(PY) -m pytest -p no:cacheprovider -ra --durations=15

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
