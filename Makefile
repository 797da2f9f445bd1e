# Agent Scheduler: `make run` (the whole system locally) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test unit venv clean synth deploy bench test-scale

$(STAMP): requirements.txt requirements-dev.txt requirements-cli.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip<26.3"
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .   # .venv/bin/agent-scheduler
	touch $(STAMP)

venv: $(STAMP)

# Also writes the CLI's profile (URL and development token, mode 0600) to $(CLI_PROFILE).
CLI_PROFILE ?= .local/profile.json
run: $(STAMP)
	SCHEDULER_PROFILE=$(CLI_PROFILE) $(PY) -m local.run

test: $(INFRA_STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

clean:
	rm -rf $(VENV) .pytest_cache

# --- infra: the CDK app in infra/ (see infra/README.md) ----------------------------------
INFRA_STAMP := $(VENV)/.infra-installed
STAGE ?= dev
CDK_OUT ?= infra/cdk.out
CDK ?= npx --yes aws-cdk@2
AGENT_FUNCTION_ARNS ?=

# `test: $(INFRA_STAMP)` above is read before INFRA_STAMP is defined (make expands
# prerequisites as it reads them), so the dependency is declared again here.
test: $(INFRA_STAMP)

$(INFRA_STAMP): $(STAMP) requirements-infra.txt
	$(PY) -m pip install --quiet -r requirements-infra.txt
	touch $(INFRA_STAMP)

# Offline, no credentials: packages the app and writes the CloudFormation template to $(CDK_OUT).
synth: $(INFRA_STAMP)
	$(PY) -m infra.app --stage $(STAGE) --out $(CDK_OUT) $(if $(AGENT_FUNCTION_ARNS),--agent-function-arns "$(AGENT_FUNCTION_ARNS)")

# Needs AWS credentials and a bootstrapped account/region (`$(CDK) bootstrap`, once).
deploy: synth
	$(CDK) deploy --app $(CDK_OUT) --all --require-approval broadening

# The many-due admission test alone (10,000 by default, also part of `make test`); N=... to change it.
N ?= 10000
test-scale: $(STAMP)
	SCHEDULER_TEST_BULK_N=$(N) $(PY) -m pytest -q tests/functional/test_dispatch.py -k many_due

# Benchmarks of DESIGN 2.3 (a few minutes; never part of `make test`): prints the table and writes
# bench/RESULTS.md and bench/lateness.svg. The smoke test (tests/unit/test_bench_smoke.py) runs it on tiny sizes.
bench: $(STAMP)
	$(PY) -m bench
