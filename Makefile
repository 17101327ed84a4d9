# The two commands README gives: `make cluster` and `make test`. Both set up from scratch.
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: setup tools browser databases containers cluster test check explore power bench
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Toxiproxy server, built from the Go module proxy at a pinned version into .tools/bin; and fencecheck
# (chaos/fencecheck: Porcupine, pinned by its go.sum), rebuilt only when its sources change.
tools:
	bash .ci/install-tools

# Debian's chromium for the dashboard's browser tests (Playwright drives it; no browser download).
browser:
	bash .ci/install-browser

# Debian's PostgreSQL and Redis for the fencing adapters' tests, which start their own servers from
# these binaries (loopback, a free port, a temporary directory). Idempotent.
databases:
	bash .ci/install-databases

# Containers for the compose test: podman with docker-compose, Docker Engine with the Compose CLI plugin
# (built with Go), and base images built here (no registry is reachable). Idempotent; where containers
# cannot be set up it says why, and the compose test skips.
containers: tools
	bash .ci/install-containers

cluster: setup tools
	$(BIN)/bullyproof cluster up

# Format and lint (ruff), generated code and compose file match their sources, imports keep the layers in pyproject.toml
# ([tool.importlinter]; `python .ci/imports.py` counts cycles and upward imports); then every test, in parallel.
check: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/python proto/gen.py --check
	$(BIN)/lint-imports
	$(BIN)/bullyproof compose --check
	bash proto/gen_go.sh --check

test: setup tools browser databases containers check explore
	$(BIN)/pytest -n auto --dist worksteal

# The explorer guards every protocol or timing change: aimed fault schedules (seed 0) over every mode
# that promises safety; exit 1 with a minimal replayable schedule if any property fails. Counts, not
# seconds, so CI explores the same schedules however loaded it is (guided schedules included: they
# depend only on earlier generations), and each run reports the protocol instants it never reached.
explore: setup
	$(BIN)/bullyproof sim explore --schedules 1400 --seed 0 --mode quorum
	$(BIN)/bullyproof sim explore --schedules 1200 --seed 0 --mode raft

# The harness's power, a benchmark: the schedule at which the explorer first fails each planted bug
# (seed 0, up to 1,500 schedules per bug; docs/explorer.md's tables). About twelve minutes on 2 cores. A bug
# not found is a number too (each line exits 1 then): both modes always run.
power: setup
	-$(BIN)/bullyproof sim bugs --mode quorum --schedules 1500 --seed 0
	-$(BIN)/bullyproof sim bugs --mode raft --schedules 1500 --seed 0

bench: setup
	$(BIN)/python -m bench
