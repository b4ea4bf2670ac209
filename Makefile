# The two commands of the README: `make demo` and `make test`. Each sets up .venv with what it needs:
# `make setup` (the demo's: torch, the package, matplotlib), `make setup-test` (that, plus the test and
# docs extras and the real third-party model code the contract suite runs).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch; override for a CUDA build, e.g. TORCH="torch==2.13.0 --index-url ...".
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.mlvgm-installed
DOCS_STAMP := $(VENV)/.mlvgm-docs-installed
TEST_STAMP := $(VENV)/.mlvgm-test-installed
SOURCES := Makefile setup.py pyproject.toml $(shell find csrc -type f)
# The torch already installed, pinned in every later pip call so that pip keeps it (a dependency that
# names torch would otherwise pull another build).
KEEP_TORCH = torch==$$($(PY) -c 'import torch; print(torch.__version__.split("+")[0])')

.PHONY: setup setup-docs setup-test test docs demo fashion-data bench nvcc-check sdist-check clean

setup: $(STAMP)
setup-docs: $(DOCS_STAMP)
setup-test: $(TEST_STAMP)

$(STAMP): $(SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q setuptools wheel ninja
	$(PY) -m pip install -q --no-build-isolation -e ".[plot]"
	touch $(STAMP)

# The extras come from the installed package's metadata ("mlvgm-data[...]"): no second build of _C.
$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install -q $(KEEP_TORCH) "mlvgm-data[docs]"
	touch $(DOCS_STAMP)

$(TEST_STAMP): $(DOCS_STAMP)
	$(PY) -m pip install -q $(KEEP_TORCH) "mlvgm-data[test,dali,webdataset,lightning]"
	# The contract suite's real third-party generator code (tests/real_models.py); stylegan2-pytorch
	# without its deps (torchvision cannot be installed next to this torch: the tests give it and
	# aim import stand-ins).
	$(PY) -m pip install -q $(KEEP_TORCH) \
	  pytorch-pretrained-biggan==0.1.1 einops==0.8.1 kornia==0.9.0 fire==0.7.1 retry==0.9.2 vector-quantize-pytorch==0.1.0
	$(PY) -m pip install -q --no-deps stylegan2-pytorch==1.9.0
	touch $(TEST_STAMP)

# The manual (mkdocs.yml, docs/), built strictly (every warning an error) into site/; offline.
docs: setup-docs
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict -q -d site

# A real compile of every CUDA source with torch's include paths (nvcc present, no GPU needed).
nvcc-check: setup
	@if command -v nvcc >/dev/null 2>&1; then \
	  inc=$$($(PY) -c "import torch.utils.cpp_extension as c; print(' '.join('-I' + p for p in c.include_paths()))"); \
	  for f in $$(find csrc -name '*.cu'); do \
	    echo "nvcc -c $$f"; \
	    nvcc -std=c++17 --fmad=false -c -Icsrc $$inc $$f -o /dev/null || exit 1; \
	  done; \
	else echo "nvcc not found: CUDA compile check skipped"; fi

# The exactness subset again under each CPU path a machine may take (MKL's and ATen's kernel
# dispatch), so that bit-exactness claims cannot hold on this CPU and fail on the next.
TEST_WORKERS ?= auto
# Only the modules that hold exactness tests: collecting all of tests/ costs ~12 s per CPU path.
EXACT_FILES = $(shell grep -l "mark.exactness" tests/test_*.py)
CPU_PATHS := ATEN_CPU_CAPABILITY=default ATEN_CPU_CAPABILITY=avx2 ATEN_CPU_CAPABILITY=avx512 \
	MKL_ENABLE_INSTRUCTIONS=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX512

# The tiers make test runs (the markers are in pyproject.toml; plain pytest is the default tier):
#   1. nvcc-check (the prerequisite above);
#   2. the default tier and the slow tier, in one run: -m "not sdist" is everything but the sdist
#      install, spread over one pytest-xdist worker per core (at most 4; TEST_WORKERS=0 runs them in
#      one process): 2 workers took 280 s where one took ~440 s on the 2-core machine. The default
#      tier holds the sdist's file list against git's tracked files (tests/test_sdist.py, seconds);
#   3. the exactness tier again under each CPU path;
#   and, as a prerequisite, the manual built strictly (make docs).
# The sdist installed into a fresh venv (minutes) is make sdist-check's, not make test's.
test: setup-test nvcc-check docs
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -p no:cacheprovider -m "not sdist" -n $(TEST_WORKERS) --maxprocesses 4
	@for path in $(CPU_PATHS); do \
	  echo "exactness tests with $$path"; \
	  env $$path $(PY) -m pytest -q -m exactness -p no:cacheprovider $(EXACT_FILES) || exit 1; \
	done

# The sdist as a user installs it: built from this tree, its file list checked, installed into a
# fresh venv with $(TORCH) (_C compiled from the sdist's sources), run from another folder (a few minutes).
sdist-check: setup-test
	MLVGM_SDIST_TORCH="$(TORCH)" $(PY) -m pytest -q -p no:cacheprovider -m "" tests/test_sdist.py

# Fashion-MNIST's IDX files for the demo: Debian's package when apt can install it, else a hint
# (the demo then runs on procedural Shapes).
FASHION_DIR := /usr/share/datasets/fashion-mnist
fashion-data:
	@if [ -f $(FASHION_DIR)/t10k-labels-idx1-ubyte.gz ] || [ -n "$$MLVGM_DATA" ]; then \
	  echo "Fashion-MNIST: found"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "Fashion-MNIST: installing Debian's dataset-fashion-mnist (30 MB) into $(FASHION_DIR)"; \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) || \
	    echo "Fashion-MNIST: apt-get could not install dataset-fashion-mnist; the demo runs on procedural Shapes"; \
	else \
	  echo "Fashion-MNIST not found: 'sudo apt-get install dataset-fashion-mnist', or put the four IDX files in a"; \
	  echo "folder and set MLVGM_DATA=FOLDER; the demo runs on procedural Shapes meanwhile"; \
	fi

demo: setup fashion-data
	$(VENV)/bin/mlvgm-data demo

bench: setup-test
	$(PY) benchmarks/resample.py
	$(VENV)/bin/mlvgm-data bench

clean:
	rm -rf build $(VENV) *.egg-info mlvgm_data/*.so demo_out bench_out
