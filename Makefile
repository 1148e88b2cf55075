# Thin wrapper: every target is one command. The first use creates .venv and installs
# what the project needs; later uses find the stamp newer than the install files and skip it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# LiteRT.js for `condense app` and the browser tests (web/package.json, pinned by its lockfile)
WEB_STAMP := web/node_modules/.installed

.PHONY: benchmark benchmark-real test test-e2e smoke install clean app-screenshot

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

test: $(STAMP) $(WEB_STAMP)       ## unit and integration tier (minutes): everything but the end-to-end runs
	$(PYTEST) -m "not e2e"

test-e2e: $(STAMP) $(WEB_STAMP)   ## end-to-end tier: whole benchmark profiles, Ray clusters, kill-and-resume, cross-run compare
	$(PYTEST) -m e2e

app-screenshot: $(STAMP) $(WEB_STAMP)  ## docs/images/app.png: the scoring page on a real PhysioNet record (needs chromium)
	CONDENSE_APP_SCREENSHOT=$(CURDIR)/docs/images/app.png $(BIN)/python -m pytest -q -m e2e tests/app/test_app_browser.py -k "physionet and int8"

smoke: $(STAMP)       ## the small benchmark CI compares against benchmarks/reference/smoke.csv
	$(BIN)/condense bench --profile smoke --out benchmarks/results/smoke-ci
	$(BIN)/condense compare benchmarks/reference/smoke.csv benchmarks/results/smoke-ci/table.csv

install: $(STAMP) $(WEB_STAMP)

$(WEB_STAMP): web/package.json web/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm not found: condense app and its browser tests need LiteRT.js (install Node.js and npm, then make install)"; fi

$(STAMP): setup.cfg pyproject.toml requirements/peers.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,ray]'
	$(BIN)/python -m pip install -q --no-deps -r requirements/peers.txt
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info
