# atlas — two commands on a fresh clone: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VIEW ?= 1
PORT ?= 8501
DEMO_CONFIG ?= configs/demo.yaml
PYTEST_ARGS ?= --durations=20  # the slowest tests, printed at the end

.PHONY: setup demo test test-unit test-integration test-browser test-gpu lint format browser-deps bench clean-runs

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'  # byte-compiled: PYTHONDONTWRITEBYTECODE would recompile every import
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install atlas with dev extras (quick when done)

demo: setup  ## check the shipped toy world (nothing trains), build the demo atlas on local Ray, serve the viewer
	$(BIN)/atlas bootstrap
ifneq ($(VIEW),0)
	$(BIN)/atlas run $(DEMO_CONFIG) --view --port $(PORT)
else
	$(BIN)/atlas run $(DEMO_CONFIG)
endif

browser-deps:  ## Debian chromium for the browser tests (installed when missing)
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: setup browser-deps  ## every tier: unit, integration (toy world + local Ray), browser
	@set +e; $(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests - failing on purpose"; exit 1; fi; exit $$rc

test-unit: setup
	$(BIN)/python -m pytest -m unit $(PYTEST_ARGS)

test-integration: setup
	$(BIN)/python -m pytest -m integration $(PYTEST_ARGS)

test-browser: setup browser-deps
	$(BIN)/python -m pytest -m browser $(PYTEST_ARGS)

test-gpu: setup  ## on a CUDA machine: tests/gpu, then bench throughput (toy world, AlexNet + DeePSiM) into runs/gpu-check
	PYTHON=$(BIN)/python bash tests/gpu/run.sh runs/gpu-check

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup  ## quality and throughput benchmarks on the toy world
	$(BIN)/atlas bench quality --json runs/bench-quality.json
	$(BIN)/atlas bench throughput --json runs/bench-throughput.json
