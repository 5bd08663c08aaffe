# hyperlab: `make demo` runs the quick reproduction of Fig. 1a; `make test` runs the test suite.
# Both create the local virtual environment .venv on first use, with a pinned PyTorch.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
# Which PyTorch build .venv gets: cpu (PyTorch's CPU wheel index: no CUDA libraries), cuda
# (PyPI's default Linux wheel, built for CUDA), cuXYZ (that CUDA build from PyTorch's index),
# or auto: cuda where `nvidia-smi -L` lists a GPU, else cpu. `make TORCH=cpu test` overrides.
TORCH ?= auto
TORCH_INDEX ?= https://download.pytorch.org/whl
TORCH_BUILD := $(if $(filter auto,$(TORCH)),$(if $(shell nvidia-smi -L 2>/dev/null),cuda,cpu),$(TORCH))
# cpu / cuXYZ: the +local build from PyTorch's index (a wheel already on disk, pip's
# find-links, serves as well); cuda: the plain version from PyPI
TORCH_SPEC := $(if $(filter cuda,$(TORCH_BUILD)),torch==$(TORCH_VERSION),torch==$(TORCH_VERSION)+$(TORCH_BUILD) --extra-index-url $(TORCH_INDEX)/$(TORCH_BUILD))
export HYPERLAB_DATA ?= $(abspath ../shared/data)

.PHONY: demo test lint docs bench reproduction clean torch-build

$(BIN)/hyperlab: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The pinned torch build first (TORCH above), so the package's `torch` requirement is met;
	# --no-deps: only torch comes from its index, its dependencies with hyperlab's below
	@echo "installing PyTorch $(TORCH_VERSION), $(TORCH_BUILD) build: pip install $(TORCH_SPEC)"
	$(BIN)/pip install --quiet --no-deps $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/hyperlab
	$(BIN)/hyperlab run modularity-synthetic-depth --quick --out runs/demo

test: $(BIN)/hyperlab
	$(BIN)/python -m pytest -q

# API reference + a page per paper (mkdocs + mkdocstrings); --strict: a warning fails the build
$(VENV)/.docs: $(BIN)/hyperlab pyproject.toml
	$(BIN)/pip install --quiet -e '.[docs]'
	touch $@

docs: $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

lint: $(BIN)/hyperlab
	$(BIN)/ruff check src tests benchmarks docs/hooks.py $(wildcard examples)
	$(BIN)/ruff format --check src tests benchmarks docs/hooks.py $(wildcard examples)
	$(BIN)/mypy   # src/hyperlab, with the settings in pyproject.toml

# REPRODUCTION.md: one row per claim of every paper-scale run recorded under results/
reproduction: $(BIN)/hyperlab
	$(BIN)/hyperlab report results --out REPRODUCTION.md --title "Reproduction record"

bench: $(BIN)/hyperlab
	$(BIN)/python benchmarks/hypernet_step.py

clean:
	rm -rf $(VENV) runs .pytest_cache build

# which PyTorch build `make` installs here, and the pip line for it
torch-build:
	@echo "TORCH=$(TORCH) -> $(TORCH_BUILD): pip install $(TORCH_SPEC)"
