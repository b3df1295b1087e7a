# Two commands on a fresh machine with Python 3.11:  `make demo`  and  `make test`.
# Both create the virtual environments first (once; again when pyproject.toml changes).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# A second, tiny environment with the legacy tflite-runtime 2.14 (what Raspberry Pi users
# have). It needs numpy < 2, so it cannot live beside numpy 2 in .venv. `edgekit convert`
# checks every TFLite artifact against the runtimes of the Pythons named here.
LEGACY := .venv-legacy
export EDGEKIT_TFLITE_PYTHONS := $(abspath $(LEGACY))/bin/python

.PHONY: setup demo test test-fast lint clean

setup: $(VENV)/.installed $(LEGACY)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[convert,onnxruntime,plot,train,dev]"
	touch $@

$(LEGACY)/.installed:
	$(PYTHON) -m venv $(LEGACY)
	$(LEGACY)/bin/python -m pip install --quiet "tflite-runtime==2.14.0" "numpy<2"
	touch $@

demo: setup
	$(BIN)/edgekit demo

# Every test, the slow end-to-end ones included (CI runs this).
test: setup
	$(BIN)/python -m pytest

# The quick loop while developing: skips tests marked slow.
test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check edgekit tests scripts models

clean:
	rm -rf $(VENV) $(LEGACY) build dist *.egg-info
