# hyperlab: `make demo` runs the quick reproduction of Fig. 1a; `make test` runs the test suite.
# Both create the local virtual environment .venv on first use (CPU PyTorch, pinned).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
export HYPERLAB_DATA ?= $(abspath ../shared/data)

.PHONY: demo test lint docs bench reproduction clean

$(BIN)/hyperlab: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# Pinned CPU torch first, so the package's `torch` requirement pulls no CUDA wheels.
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/hyperlab
	$(BIN)/hyperlab run modularity-synthetic-depth --quick --out runs/demo

test: $(BIN)/hyperlab
	$(BIN)/python -m pytest -q

# API reference + a page per paper (mkdocs + mkdocstrings); --strict: a warning fails the build
$(VENV)/.docs: $(BIN)/hyperlab
	$(BIN)/pip install --quiet -e '.[docs]'
	touch $@

docs: $(VENV)/.docs
	$(BIN)/mkdocs build --strict --site-dir build/site

lint: $(BIN)/hyperlab
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# REPRODUCTION.md: one row per claim of every paper-scale run recorded under results/
reproduction: $(BIN)/hyperlab
	$(BIN)/hyperlab report results --out REPRODUCTION.md --title "Reproduction record"

bench: $(BIN)/hyperlab
	$(BIN)/python benchmarks/hypernet_step.py

clean:
	rm -rf $(VENV) runs .pytest_cache build
