# Thin wrapper: every target is one command. The first use creates .venv and installs
# what the project needs; later uses find the stamp newer than the install files and skip it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: benchmark benchmark-real test test-e2e smoke install clean

# PhysioNet 2012 set A (open data): make benchmark-real PHYSIONET=path/to/set-a.tar.gz
PHYSIONET ?= ../shared/data/physionet2012/set-a.tar.gz

benchmark: $(STAMP)   ## the main job: the default condensation table on the synthetic cohort
	$(BIN)/condense bench --profile default

benchmark-real: $(STAMP)  ## the real-data table: PhysioNet 2012, best epoch + early stopping, 3 seeds
	$(BIN)/condense bench --profile real --seeds 3 --data physionet2012:$(PHYSIONET)

# Tests run on every core (pytest-xdist, one file per worker at a time; tests/conftest.py gives each
# worker its share of threads).
TEST_WORKERS ?= auto
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test: $(STAMP)        ## unit and integration tier (minutes): everything but the end-to-end runs
	$(PYTEST) -m "not e2e"

test-e2e: $(STAMP)    ## end-to-end tier: whole benchmark profiles, Ray clusters, kill-and-resume, cross-run compare
	$(PYTEST) -m e2e

smoke: $(STAMP)       ## the small benchmark CI compares against benchmarks/reference/smoke.csv
	$(BIN)/condense bench --profile smoke --out benchmarks/results/smoke-ci
	$(BIN)/condense compare benchmarks/reference/smoke.csv benchmarks/results/smoke-ci/table.csv

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml requirements/peers.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,ray]'
	$(BIN)/python -m pip install -q --no-deps -r requirements/peers.txt
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info
