# imagelake — all set-up is two commands on a fresh Debian machine:
#   make demo    system packages + .venv, then build and ingest a synthetic demo lake
#   make test    system packages + .venv, then ruff, mypy, import-linter and pytest
# `make help` lists the other targets.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# Targets run one after another in the order written, even under `make -j`.
.NOTPARALLEL:

PYTHON ?= python3
VENV ?= .venv
LAKE ?= ./lake
# Per-test limit, so a hung test fails with a traceback long before CI's 90 minutes are up.
PYTEST_ARGS ?= --timeout=900

VPY := $(VENV)/bin/python
STAMP := $(VENV)/.imagelake-installed
LINT_PATHS := $(wildcard src tests benchmarks)
BENCHMARKS := $(sort $(wildcard benchmarks/*.py))
PIP := $(VPY) -m pip --disable-pip-version-check
PIP_INSTALL := $(PIP) install --progress-bar off

.PHONY: help system venv demo test lint pytest bench lab clean pg-start pg-stop pg-url \
	libvirtd-start libvirtd-stop

help:
	@echo "imagelake make targets:"
	@echo "  make demo    install everything needed, build a synthetic demo lake in $(LAKE), show it"
	@echo "  make test    install everything needed, then lint (ruff, mypy, import-linter) and pytest"
	@echo "  make lint    ruff check, mypy, lint-imports"
	@echo "  make pytest  pytest only, against a throwaway PostgreSQL server when one can start"
	@echo "  make bench   run every benchmarks/*.py"
	@echo "  make lab     JupyterLab (needs the 'jupyter' extra)"
	@echo "  make system  Debian packages (scripts/setup-system.sh; installs only as root)"
	@echo "  make venv    $(VENV) with imagelake[dev] (re-made when pyproject.toml changes)"
	@echo "  make clean   remove lake/, demo-data/ and caches (keeps $(VENV))"
	@echo "  make pg-start | pg-url | pg-stop   the throwaway PostgreSQL test server"
	@echo "  make libvirtd-start | libvirtd-stop   the system libvirtd for emulator VMs (root, no systemd)"

system:
	@bash scripts/setup-system.sh

# The stamp lives inside the venv, so deleting .venv also forgets the install.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip
	$(PIP_INSTALL) -e '.[dev]'
	@touch $@

venv: $(STAMP)

# The demo's emulator step needs the system libvirtd: started here when it is not running (as
# root), and stopped afterwards only if this recipe started it.
demo: system venv
	@virt_started=0; \
	if virt=$$(bash scripts/libvirtd.sh start 2>/dev/null); then \
	  if [ "$$virt" = started ]; then virt_started=1; fi; \
	fi; \
	rc=0; $(VENV)/bin/imagelake demo --lake $(LAKE) || rc=$$?; \
	if [ "$$virt_started" = 1 ]; then bash scripts/libvirtd.sh stop >/dev/null || true; fi; \
	exit $$rc

# Lint and pytest both run even when the first fails, so one run shows every problem;
# `make -k` still exits non-zero if either failed.
test: system venv
	@$(MAKE) --no-print-directory -k lint pytest

lint: venv
	@rc=0; \
	echo "== ruff check $(LINT_PATHS)"; $(VENV)/bin/ruff check $(LINT_PATHS) || rc=1; \
	echo "== mypy"; $(VENV)/bin/mypy || rc=1; \
	echo "== lint-imports"; $(VENV)/bin/lint-imports || rc=1; \
	exit $$rc

# Starts a throwaway PostgreSQL server unless IMAGELAKE_TEST_PG_URL is already set, and the system
# libvirtd (qemu:///system, for the emulator VM tests) unless one already answers, and stops what it
# started afterwards whatever pytest's outcome; the recipe exits with pytest's own code. Each run gets its
# own server (state folder named after the shell's pid), so runs in one checkout don't collide.
pytest: venv
	@started=0; \
	export IMAGELAKE_PG_DIR="$${IMAGELAKE_PG_DIR:-/tmp/imagelake-pg-make-$$(id -u)-$$$$}"; \
	if [ -z "$${IMAGELAKE_TEST_PG_URL:-}" ]; then \
	  if url=$$(bash scripts/pg-test-server.sh start); then \
	    export IMAGELAKE_TEST_PG_URL="$$url"; started=1; \
	  else \
	    echo "make: no PostgreSQL test server; postgres tests skip (and fail under CI=true)" >&2; \
	  fi; \
	fi; \
	virt_started=0; \
	if virt=$$(bash scripts/libvirtd.sh start); then \
	  if [ "$$virt" = started ]; then virt_started=1; fi; \
	else \
	  echo "make: no libvirtd; emulator VM tests skip (and fail under CI=true)" >&2; \
	fi; \
	stop_pg() { if [ "$$started" = 1 ]; then bash scripts/pg-test-server.sh stop || true; started=0; fi; }; \
	stop_virt() { if [ "$$virt_started" = 1 ]; then bash scripts/libvirtd.sh stop || true; virt_started=0; fi; }; \
	trap 'stop_pg; stop_virt; exit 130' INT TERM; \
	rc=0; $(VPY) -m pytest -q $(PYTEST_ARGS) || rc=$$?; \
	stop_pg; stop_virt; \
	exit $$rc

bench: system venv
	@if [ -z "$(BENCHMARKS)" ]; then echo "no benchmarks/*.py yet"; exit 0; fi; \
	rc=0; \
	for b in $(BENCHMARKS); do \
	  echo "== $$b"; $(VPY) "$$b" || { echo "FAILED: $$b" >&2; rc=1; }; \
	done; \
	exit $$rc

# JupyterLab on the demo lake (built first when ./lake is missing); scripts/lab.sh says what it needs.
lab: system venv
	@VENV=$(VENV) LAKE=$(LAKE) bash scripts/lab.sh

clean:
	rm -rf lake demo-data test-artifacts benchmarks/out build dist \
	  .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
	find . -path ./$(VENV) -prune -o -path ./.git -prune -o \
	  \( -name __pycache__ -o -name '*.egg-info' \) -type d -print0 | xargs -0 rm -rf

pg-start:
	@bash scripts/pg-test-server.sh start

pg-url:
	@bash scripts/pg-test-server.sh url

pg-stop:
	@bash scripts/pg-test-server.sh stop

libvirtd-start:
	@bash scripts/libvirtd.sh start >/dev/null

libvirtd-stop:
	@bash scripts/libvirtd.sh stop
