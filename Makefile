# Agent Scheduler: `make run` (the whole system locally) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test unit functional e2e venv clean synth deploy bench

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip<26.3"
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m local.run

test: $(INFRA_STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

clean:
	rm -rf $(VENV) .pytest_cache

INFRA_STAMP := $(VENV)/.infra-installed
$(INFRA_STAMP): $(STAMP) requirements-infra.txt
	$(PY) -m pip install --quiet -r requirements-infra.txt
	touch $(INFRA_STAMP)

synth: $(INFRA_STAMP)
	cd infra && ../$(PY) -m infra_app.synth

deploy: $(INFRA_STAMP)
	cd infra && ../$(PY) -m infra_app.deploy
