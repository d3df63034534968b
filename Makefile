# The README's two commands: `make demo` and `make test`. Both set up their own virtual environment.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# constraints.txt pins torch to the CPU build on disk; the package itself asks for a range.
PIP := $(BIN)/python -m pip install -q -c constraints.txt

.PHONY: demo test test-fast notebook bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.core-installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.core-installed
	$(PIP) -e '.[dev,bench,ray]'
	touch $@

demo: $(VENV)/.core-installed
	$(BIN)/grokscope demo --out runs/demo

# The report is tested in a real browser: Debian's chromium and chromium-driver.
/usr/bin/chromedriver:
	apt-get update -q && apt-get install -y -q chromium chromium-driver

# Everything, then the core tests again on the Python paths a machine without a C compiler takes.
CORE_TESTS := tests/test_llc_estimator.py tests/test_llc_kernels.py tests/test_noise.py tests/test_native.py tests/test_training.py
test: $(VENV)/.dev-installed /usr/bin/chromedriver
	$(BIN)/python -m pytest -q
	GROKSCOPE_NATIVE=0 $(BIN)/python -m pytest -q -m "not slow" $(CORE_TESTS)

# The working loop: everything but the tests marked slow (real clusters, kills, scientific
# validations) or browser (headless Chromium); it needs no browser.
test-fast: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -q -m "not slow and not browser"

# The tutorials in notebooks/, in JupyterLab.
notebook: $(VENV)/.core-installed
	$(PIP) -e '.[notebook]'
	$(BIN)/jupyter lab notebooks/

bench: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/llc_speed.py

clean:
	rm -rf $(VENV) runs
