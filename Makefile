# Agent Scheduler: `make run` (the whole system locally), `make test` (the whole suite) and
# `make check` (lint, types, layer contracts).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test unit check venv clean synth deploy bench test-scale chaos reset

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

# Forget everything `make run` kept (SCHEDULER_LOCAL_STATE_DIR, default .local/state); refused while it runs.
reset:
	$(or $(wildcard $(PY)),$(PYTHON)) -m local.state reset

test: $(INFRA_STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

# Pure tests only: no moto, no adapters (the layer contracts in .importlinter hold tests.unit to that).
unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

# Lint (ruff.toml), types (mypy.ini) and the layer contracts (.importlinter); .pre-commit-config.yaml
# runs the same three. `ruff format` is not enforced yet (see ruff.toml).
check: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# --- infra: the CDK app in infra/ (see infra/README.md) ----------------------------------
INFRA_STAMP := $(VENV)/.infra-installed
STAGE ?= dev
CDK_OUT ?= infra/cdk.out
CDK ?= npx --yes aws-cdk@2
AGENT_FUNCTION_ARNS ?=
# Stack options for synth/deploy, e.g. INFRA_OPTS="--xray --cors-origin https://dash.example.com" (infra/README.md).
INFRA_OPTS ?=
# `cdk deploy --require-approval`: broadening asks before widening IAM (needs a terminal);
# in CI, where there is none: make deploy REQUIRE_APPROVAL=never
REQUIRE_APPROVAL ?= broadening

# `test: $(INFRA_STAMP)` above is read before INFRA_STAMP is defined (make expands
# prerequisites as it reads them), so the dependency is declared again here. `check` needs it too:
# mypy reads the CDK app's imports.
test: $(INFRA_STAMP)
check: $(INFRA_STAMP)

$(INFRA_STAMP): $(STAMP) requirements-infra.txt
	$(PY) -m pip install --quiet -r requirements-infra.txt
	touch $(INFRA_STAMP)

# Offline, no credentials: packages the app and writes the CloudFormation template to $(CDK_OUT).
synth: $(INFRA_STAMP)
	$(PY) -m infra.app --stage $(STAGE) --out $(CDK_OUT) $(if $(AGENT_FUNCTION_ARNS),--agent-function-arns "$(AGENT_FUNCTION_ARNS)") $(INFRA_OPTS)

# Needs AWS credentials and a bootstrapped account/region (`$(CDK) bootstrap`, once).
deploy: synth
	$(CDK) deploy --app $(CDK_OUT) --all --require-approval $(REQUIRE_APPROVAL)

# The many-due admission test alone at N due schedules (10,000 by default; `make test` runs it at
# 2,000, the default of SCHEDULER_TEST_BULK_N in tests/functional/test_dispatch.py).
N ?= 10000
test-scale: $(STAMP)
	SCHEDULER_TEST_BULK_N=$(N) $(PY) -m pytest -q tests/functional/test_dispatch.py -k many_due

# Cost and speed benchmarks (a few minutes; never part of `make test`): prints the table and writes
# bench/RESULTS.md and bench/lateness.svg: requests and CPU per fire, the whole run path per run (requests,
# write units at caps 5/100/1,000, dollars, modelled starts per second) and a 32-thread contention run.
# The smoke test (tests/functional/test_bench_smoke.py) runs it on tiny sizes.
bench: $(STAMP)
	$(PY) -m bench
	$(PY) -m bench.flow

# The run path under faults (several minutes): at least 10,000 scheduled fires over simulated days on
# moto, with throttling, 5xx, lost answers and retried commits, killed ticks and workers, duplicate and
# late deliveries, racing ticks and cancels, rate() and at() schedules, backfills racing the tick.
# Prints one line and fails unless all five counts are 0:
#   chaos: N fires, L lost, D duplicates, S stuck, C cap violations, P priority inversions
# `make test` runs the smoke size (tests/functional/test_chaos_smoke.py). SEED=n for another run.
SEED ?= 1
chaos: $(STAMP)
	$(PY) -m devtools.chaos --seed $(SEED)
