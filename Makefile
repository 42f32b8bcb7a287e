# Switchboard — the two set-up commands are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint unit bench check clean i18n docs

$(STAMP): pyproject.toml
	@echo "Installing Switchboard and its tools into $(VENV)/ (once; a minute or so)..."
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -qq --disable-pip-version-check --upgrade pip
	@$(BIN)/pip install -qq --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

## run: the bot; with no MM_URL set, the built-in sandbox with a terminal chat
run: $(STAMP)
	$(BIN)/switchboard run

## test: lint, type-check and the whole test suite
test: $(STAMP) lint
	$(BIN)/pytest -q

## unit: lint, type-check and the fast tests: no real servers, no end-to-end runs
unit: $(STAMP) lint
	$(BIN)/pytest -q -m "not e2e and not servers"

lint: $(STAMP)
	$(BIN)/ruff check plugin bridge tests bench
	$(BIN)/mypy

## check: validate plugin.yaml without connecting
check: $(STAMP)
	$(BIN)/switchboard check

## i18n: bring the message catalogs (plugin/i18n) in step with the code
i18n: $(STAMP)
	$(BIN)/python -m plugin.i18n.extract

## docs: regenerate docs/configuration.md from the schema (plugin/config.py, plugin.yaml)
docs: $(STAMP)
	$(BIN)/python -m plugin.configdoc

## bench: throughput and latency figures (never part of `make test`)
bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
