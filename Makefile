# Two commands do everything on a fresh machine:
#   make demo   -- set up .venv and run the end-to-end job on the simulated default dataset
#   make test   -- set up .venv and run the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU machines: pin the local CPU build of torch. GPU users: `make setup TORCH=torch` (or pip install -e .).
TORCH ?= torch==2.13.0
OUT ?= runs/demo
PROFILE ?= quick

.PHONY: setup demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/dopplerdiff run --profile $(PROFILE) --out $(OUT) --resume

test: setup
	$(BIN)/python -m pytest tests

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python bench/all.py

clean:
	rm -rf $(VENV) runs
