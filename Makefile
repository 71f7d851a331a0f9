# make test     lint, type-check and run every test (installs what it needs)
# make sandbox  run the whole mirror locally (see README)
SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.12 /root/.pyenv/versions/3.12.1/bin/python3.12; do \
             $$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: test lint unit integration deps venv clean

deps:
	@scripts/install-system-deps.sh

$(STAMP): requirements-dev.txt lambda/requirements.txt
	@test -n "$(PYTHON)" || { echo "Python 3.12 is required (the Lambda runtime is python3.12)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check lambda tests
	$(VENV)/bin/ruff format --check lambda tests
	$(VENV)/bin/mypy

test: deps venv lint
	$(VENV)/bin/pytest -q

unit: venv
	$(VENV)/bin/pytest -q tests/unit

integration: deps venv
	$(VENV)/bin/pytest -q tests/integration

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
