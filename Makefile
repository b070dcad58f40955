# The two set-up commands of the README. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run quickstart test test-unit lint mutations install clean

# `make run` is a development service: the partner sandbox (/secure/simulate/...) on, and webhooks
# allowed to plain-http and private targets (the quickstart's own receiver on 127.0.0.1). Either
# can be overridden (ANTACA_SANDBOX=0 make run); both are refused or unsafe in production.
ANTACA_SANDBOX ?= 1
ANTACA_WEBHOOK_ALLOW_PRIVATE_TARGETS ?= 1
QUICKSTART_ARGS ?=

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Antaca needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

run: install
	ANTACA_SANDBOX=$(ANTACA_SANDBOX) \
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

clean:
	rm -rf $(VENV) .antaca
