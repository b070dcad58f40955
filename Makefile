# The two set-up commands of the README. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-unit lint mutations install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Antaca needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

run: install
	@echo "The administration panel will be at http://127.0.0.1:8080/panel/ (ANTACA_PORT changes the port)."
	@echo "Create the first administrator (once, in another terminal): $(BIN)/antaca admin create-user --email you@example.com --role ADMIN"
	$(BIN)/antaca serve

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
