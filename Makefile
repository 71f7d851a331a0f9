# make test     lint, type-check and run every test (installs what it needs)
# make sandbox  run the whole mirror locally (see README)
SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.12 /root/.pyenv/versions/3.12.1/bin/python3.12; do \
             $$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
STAMP := $(VENV)/.installed

SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
# sam build needs python3.12 on PATH; checkov and the SAM CLI pin their own boto3, so each has its own venv.
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1
PY312_DIR = $(dir $(shell command -v $(PYTHON)))

.PHONY: test lint template unit integration sandbox plan benchmark buildspec local-env deps venv clean

deps:
	@scripts/install-system-deps.sh

$(STAMP): requirements-dev.txt lambda/requirements.txt
	@test -n "$(PYTHON)" || { echo "Python 3.12 is required (the Lambda runtime is python3.12)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check lambda tests devtools copier
	$(VENV)/bin/ruff format --check lambda tests devtools copier
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m devtools.buildspec

# Embed copier/copy_images.py in template.yaml's buildspec (after changing the copy program).
buildspec: venv
	$(VENV)/bin/python -m devtools.buildspec --write

$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q --disable-pip-version-check aws-sam-cli==1.170.0
	touch $@

$(CHECKOV_VENV)/.installed:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --disable-pip-version-check checkov==3.3.30
	touch $@

# The template: cfn-lint, sam validate --lint, checkov (no failed check) and a real sam build.
template: venv $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed
	$(VENV)/bin/cfn-lint template.yaml
	$(SAM_VENV)/bin/sam validate --lint
	$(CHECKOV_VENV)/bin/checkov -f template.yaml --framework cloudformation --quiet --compact --skip-download
	PATH="$(PY312_DIR):$$PATH" $(SAM_VENV)/bin/sam build

test: deps venv lint template
	$(VENV)/bin/pytest -q

# The whole mirror on this machine: local registries, moto, the real handler and the real buildspec.
SANDBOX_DIR ?= .sandbox
sandbox: deps venv
	$(VENV)/bin/python -m devtools.sandbox --workdir $(SANDBOX_DIR)

# Try a list before deploying it: the function's parsing, tag sets and checks against the real registries (and this
# account's ECR with AWS credentials); starts no build, writes nothing: make plan LIST=my-images.yaml [REGION=...]
# (the ECR's region: REGION, else the AWS configuration's, not the us-east-1 this Makefile gives the tests)
plan: venv
	@test -n "$(LIST)" || { echo "usage: make plan LIST=my-images.yaml [REGION=<the ECR's region>]"; exit 2; }
	$(if $(filter file,$(origin AWS_DEFAULT_REGION)),env -u AWS_DEFAULT_REGION) \
		$(VENV)/bin/python -m devtools.plan $(LIST) $(if $(REGION),--region $(REGION))

# Figures: the package sam build makes (size, import time), then at scale (1,000 images; 10,000 entries): a
# timing pass (with the bare-HTTP floor at 1,000 and 10,000 images, the 20,000-entry maximum in a fresh process and
# the copy scenario), then a pass that also traces Python memory. About 20 minutes here.
benchmark: deps venv $(SAM_VENV)/.installed
	PATH="$(PY312_DIR):$$PATH" $(SAM_VENV)/bin/sam build >/dev/null
	$(VENV)/bin/python -m devtools.benchmark --no-trace 2>/dev/null | grep '^{"scenario'
	$(VENV)/bin/python -m devtools.benchmark 2>/dev/null | grep '^{"scenario'

# The env-vars file with which `sam local invoke` runs as the stack STACK's function does (from its parameters
# and outputs): make local-env STACK=ecr-mirror [REGION=eu-west-1]
local-env: venv
	@test -n "$(STACK)" || { echo "usage: make local-env STACK=<the deployed stack's name> [REGION=<its region>]"; exit 2; }
	$(VENV)/bin/python -m devtools.localenv --stack $(STACK) $(if $(REGION),--region $(REGION))

unit: venv
	$(VENV)/bin/pytest -q tests/unit

integration: deps venv
	$(VENV)/bin/pytest -q tests/integration

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .aws-sam .mypy_cache .ruff_cache .pytest_cache .hypothesis
