# Estafette — the two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
HOST ?= 127.0.0.1
PORT ?= 8080

# Locks: every package, transitive ones included, pinned with its hashes (`make lock`).
# requirements*.txt are what a human edits; the venv installs only from the lock.
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
# The lock's and the audit's own tools, in a venv of their own: they are not the app's.
TOOLS := .venv-tools
TOOL_PACKAGES := pip-tools==7.6.2 pip-audit==2.10.1
PIP_COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(TOOLS)/bin/pip-compile --quiet \
	--generate-hashes --strip-extras --allow-unsafe \
	--no-emit-index-url --no-emit-find-links --no-emit-trusted-host

.PHONY: run test lint format lock audit system-deps api-browser clean web screenshots bench-web

# Debian packages: Dovecot for the demo and the tests, nginx to check its config, Chromium
# for the web client's browser tests, promtool (prometheus) for the alert rules' tests,
# wrk for the API bench's load.
# Node.js and npm build the web client and run the OpenID provider the tests sign in at;
# Debian's are installed only where the machine has none of its own.
SYSTEM_PACKAGES := dovecot-imapd dovecot-lmtpd dovecot-submissiond dovecot-sieve nginx-light \
	chromium prometheus wrk
system-deps:
	@packages="$(SYSTEM_PACKAGES)"; command -v node >/dev/null || packages="$$packages nodejs"; \
	command -v npm >/dev/null || packages="$$packages npm"; \
	if ! dpkg -s $$packages >/dev/null 2>&1 || ! command -v node >/dev/null \
	   || ! command -v npm >/dev/null; then \
	  echo "Installing $$packages (Debian)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    $$packages >/dev/null; \
	fi

# Exactly the locked packages, each checked against its hash (the dev lock holds the runtime
# lock's pins too). A package missing from the lock or a changed file stops the install.
$(VENV)/.installed: $(DEV_LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r $(DEV_LOCK)
	touch $@

$(TOOLS)/.installed:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q $(TOOL_PACKAGES)
	touch $@

# Regenerate the locks after editing requirements*.txt. Pins already in a lock are kept
# unless an input now excludes them, so re-running it changes nothing.
# (`$(PIP_COMPILE) --upgrade` moves every package to its latest allowed release.)
lock: $(TOOLS)/.installed
	$(PIP_COMPILE) --output-file $(LOCK) requirements.txt
	$(PIP_COMPILE) --constraint $(LOCK) --output-file $(DEV_LOCK) requirements-dev.txt

# Known vulnerabilities of the locked packages, from PyPI's advisory data (needs the network;
# not part of `make test`). --strict: a package that could not be checked fails the audit,
# so an unreachable database is never taken for a clean report.
audit: $(TOOLS)/.installed
	@report=$$(mktemp); trap 'rm -f "$$report"' EXIT; \
	$(TOOLS)/bin/pip-audit --strict --require-hashes --disable-pip --progress-spinner off \
	    -r $(DEV_LOCK) 2>&1 | tee "$$report"; \
	[ "$${PIPESTATUS[0]}" -eq 0 ] && exit 0; \
	if grep -q "could not be audited" "$$report"; then \
	  echo "make audit: NOT DONE: the vulnerability database (PyPI's JSON API) could not be" \
	       "reached or does not answer for these packages, so nothing was checked." >&2; \
	else \
	  echo "make audit: FAILED: the locked packages above have known vulnerabilities." >&2; \
	fi; exit 1

# The embedded gateway in demo mode: SQLite, a local Dovecot with sample MSSanté mail.
# The demo trusts its own Dovecot CA; only the migration step needs the setting named.
run: system-deps $(VENV)/.installed api-browser
	ESTAFETTE_CA_BUNDLE=$${ESTAFETTE_CA_BUNDLE:-system} $(PY) -m flask --app mobile_api db upgrade
	$(PY) -m devtools.run --host $(HOST) --port $(PORT)

# The web client (web/app) is plain ES modules with no build step: `make run` serves it as
# it is. npm brings only its test tools (axe-core), pinned in web/package-lock.json.
WEB_DEPS := web/node_modules/.installed
$(WEB_DEPS): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $@
web: $(WEB_DEPS)

# The browser path at phone, tablet and desktop sizes, saving web/screenshots/*.png.
screenshots: system-deps $(VENV)/.installed $(WEB_DEPS)
	rm -rf web/screenshots
	$(PY) -m pytest -p no:cacheprovider -q web/tests/test_web_client_path.py -k reads_answers

# Time to the first message row on a 10,000-message mailbox, cold and warm (one JSON line).
bench-web: system-deps $(VENV)/.installed
	$(PY) -m bench.web_client

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The API browser's files (/api/v1/docs): swagger-ui-dist exactly as package-lock.json pins
# it; no install scripts run.
API_BROWSER := mobile_api/api_browser
$(API_BROWSER)/node_modules/.package-lock.json: $(API_BROWSER)/package-lock.json
	cd $(API_BROWSER) && npm ci --ignore-scripts --no-audit --no-fund --silent
api-browser: system-deps $(API_BROWSER)/node_modules/.package-lock.json

# Lint, then the whole suite: every app test runs on SQLite and on PostgreSQL; web/tests
# drives the web client in Debian's Chromium (one gateway, on SQLite, per module). On
# TEST_WORKERS processes (pytest-xdist), each with its own databases, Dovecot and FCM; the
# fault drills share one group, so one worker runs them in turn (tests/conftest.py).
TEST_WORKERS ?= 3
test: system-deps $(VENV)/.installed $(WEB_DEPS) api-browser lint
	$(PY) -m pytest -p no:cacheprovider -ra --durations=15 -n $(TEST_WORKERS) --dist loadgroup

clean:
	rm -rf $(VENV) $(TOOLS) var .pytest_cache .ruff_cache web/node_modules web/screenshots
