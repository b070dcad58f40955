# The two set-up commands of the README. Each creates .venv on first use. Installs take their
# versions from constraints.txt (tools/freeze_constraints.py): the same packages everywhere.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip --quiet --disable-pip-version-check --no-input
CONSTRAINTS := constraints.txt

.PHONY: run quickstart test test-unit lint mutations install install-runtime constraints clean

# `make run` is a development service: the partner sandbox (/secure/simulate/...) on, and webhooks
# allowed to plain-http and private targets (the quickstart's own receiver on 127.0.0.1). Either
# can be overridden (ANTACA_SANDBOX=0 make run); both are refused or unsafe in production.
ANTACA_SANDBOX ?= 1
ANTACA_WEBHOOK_ALLOW_PRIVATE_TARGETS ?= 1
QUICKSTART_ARGS ?=

# The service alone (what `make run` needs): no test package.
$(BIN)/.runtime: pyproject.toml $(CONSTRAINTS)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Antaca needs Python 3.11+"'
	@test -x $(BIN)/python || { echo "creating $(VENV) and installing Antaca (a minute the first time)..."; $(PYTHON) -m venv $(VENV); }
	@$(PIP) install --upgrade pip >/dev/null 2>&1 || true
	@$(PIP) install -c $(CONSTRAINTS) -e . >$(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@touch $@

# The service and the tests' packages.
$(BIN)/.installed: $(BIN)/.runtime
	@echo "installing the test packages..."
	@$(PIP) install -c $(CONSTRAINTS) -e '.[test]' >$(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@touch $@

install-runtime: $(BIN)/.runtime
install: $(BIN)/.installed

run: install-runtime
	@echo "The administration panel will be at http://127.0.0.1:8080/panel/ (ANTACA_PORT changes the port)."
	@echo "Create the first administrator (once, in another terminal): $(BIN)/antaca admin create-user --email you@example.com --role ADMIN --password-stdin < password.txt"
	@echo "Ctrl-C stops the service and its embedded database; more in README.md, 'First steps'."
	@ANTACA_SANDBOX=$(ANTACA_SANDBOX) \
	ANTACA_WEBHOOK_ALLOW_PRIVATE_TARGETS=$(ANTACA_WEBHOOK_ALLOW_PRIVATE_TARGETS) $(BIN)/antaca serve

# A partner's first hour against a running `make run` (another terminal): examples/partner_quickstart.py.
# Its last line is {"ok": true, "steps": N, "seconds": S}. Options: QUICKSTART_ARGS="--help".
quickstart: install
	$(BIN)/python examples/partner_quickstart.py $(QUICKSTART_ARGS)

test: install lint
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check antaca_auth antaca_api bench tests

# The tests without a database (tests/unit/): seconds.
test-unit: install
	$(BIN)/python -m pytest -q tests/unit

# Not part of `test`: breaks the product one line at a time (tests/mutations.py) and checks that
# the tests named for each break fail (docs/testing.md).
mutations: install
	$(BIN)/python -m tests.mutation_runner

# After a change of dependencies in pyproject.toml: install, then pin what got installed.
constraints: install
	$(BIN)/python tools/freeze_constraints.py

# Deletes the virtual environment and .antaca: the embedded database's data, the development CA,
# keys and card data keys (cards issued under them can no longer be read).
clean:
	rm -rf $(VENV) .antaca
