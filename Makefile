# Two commands on a fresh machine with Python 3.11:  `make demo`  and  `make test`.
# `make demo` builds only what it uses (.venv, .venv-legacy, in this folder) and installs nothing
# else. `make test` adds what only the tests use (`make setup-tests`): the old OpenVINO
# environments, the IMX500 toolchain's (.venv-imx500, also `make setup-imx500`) and, as root, the
# Debian packages some tests need (scripts/ci_system_deps.sh).
# The virtual environments are built once, and again when pyproject.toml changes.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# A second, tiny environment with the legacy tflite-runtime 2.14 (what Raspberry Pi users
# have). It needs numpy < 2, so it cannot live beside numpy 2 in .venv. `edgekit convert`
# finds it beside the checkout and checks every TFLite artifact against it too.
LEGACY := .venv-legacy

# Older OpenVINO APIs, for the Intel NCS2 (MYRIAD) path: built only where the old Python exists
# (tests that need them skip otherwise). 2021.4.2 is the last PyPI wheel with the MYRIAD plugin
# (openvino.inference_engine API, Python <= 3.9); 2022.3.2 has the openvino.runtime API.
PY39 = $(shell scripts/find_python.sh 3.9)
PY310 = $(shell scripts/find_python.sh 3.10)
OV2021 := .venv-openvino2021
OV2022 := .venv-openvino2022
# Three environments install this checkout (-e .), which writes edgekit.egg-info here: one at a
# time when they are built side by side (make -j).
EDITABLE := flock .editable.lock
OLD_DEPS := click "opencv-python-headless<=4.11.0.86"

# The Raspberry Pi AI Camera (Sony IMX500) toolchain: Sony's model-compression-toolkit and
# imx500-converter pin TensorFlow 2.15 / Keras 2, so they get an environment of their own that
# `edgekit convert` finds beside the checkout (as it finds .venv-legacy). imxconv-tf needs Java 17.
IMX500 := .venv-imx500
IMX500_DEPS := "imx500-converter[tf]==3.19.2" "model-compression-toolkit==2.5.1"

.PHONY: setup setup-tests setup-imx500 system-packages demo test test-fast lint docs clean

# What `make demo` (and using edgekit from this checkout) needs.
setup: $(VENV)/.installed $(LEGACY)/.installed

# What the tests need besides: the old OpenVINO environments, and the Debian packages (an SSH
# server, mmdebstrap for the emulated Pi, ...). Those are installed only as root, after a list of
# what and why; EDGEKIT_NO_SYSTEM_PACKAGES=1 installs none (the tests that need them skip).
setup-tests: system-packages setup $(OV2021)/.installed $(OV2022)/.installed $(IMX500)/.installed

# The IMX500 conversion environment alone (`edgekit convert --formats imx500` uses it).
setup-imx500: $(IMX500)/.installed

system-packages:
	@scripts/ci_system_deps.sh --optional

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(EDITABLE) $(BIN)/python -m pip install --quiet -e ".[convert,onnxruntime,plot,pillow,train,fleet,events,dev,docs]"
	touch $@

$(LEGACY)/.installed:
	$(PYTHON) -m venv $(LEGACY)
	$(LEGACY)/bin/python -m pip install --quiet "tflite-runtime==2.14.0" "numpy<2"
	touch $@

$(OV2021)/.installed: pyproject.toml
	@if [ -z "$(PY39)" ]; then echo "no Python 3.9 here: skipping $(OV2021)"; else \
	  $(PY39) -m venv $(OV2021) && \
	  $(OV2021)/bin/python -m pip install --quiet "openvino==2021.4.2" "numpy<1.24" $(OLD_DEPS) && \
	  $(EDITABLE) $(OV2021)/bin/python -m pip install --quiet --no-deps -e . && touch $@; fi

$(OV2022)/.installed: pyproject.toml
	@if [ -z "$(PY310)" ]; then echo "no Python 3.10 here: skipping $(OV2022)"; else \
	  $(PY310) -m venv $(OV2022) && \
	  $(OV2022)/bin/python -m pip install --quiet "openvino==2022.3.2" "numpy<2" $(OLD_DEPS) && \
	  $(EDITABLE) $(OV2022)/bin/python -m pip install --quiet --no-deps -e . && touch $@; fi

$(IMX500)/.installed:
	$(PYTHON) -m venv $(IMX500)
	$(IMX500)/bin/python -m pip install --quiet --upgrade pip
	$(IMX500)/bin/python -m pip install --quiet $(IMX500_DEPS)
	touch $@

demo: setup
	$(BIN)/edgekit demo

# Every test, the slow end-to-end ones included (CI runs this), on WORKERS pytest-xdist workers:
# one test file per worker at a time, the emulated Pi's files as one (tests/conftest.py). (Three
# workers, or the costliest files first, were slower on the 2-core CI machine: the costliest
# files are CPU-bound, and took 1.3 to 1.7 times as long side by side.)
# `make test WORKERS=1` runs them in one process, one after the other.
# The environments and the Debian packages are independent: built side by side (-j4 here, about
# 3 minutes less on a fresh machine than one after the other: 2.4 instead of 5.6).
WORKERS ?= 2
test:
	@$(MAKE) --no-print-directory -j4 setup-tests
	$(BIN)/python -m pytest $(if $(filter-out 0 1,$(WORKERS)),-n $(WORKERS) --dist loadfile)

# The quick loop while developing: skips tests marked slow.
test-fast:
	@$(MAKE) --no-print-directory -j4 setup-tests
	$(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check edgekit tests scripts models

# The documentation site (docs/, mkdocs.yml) into site/; `$(BIN)/mkdocs serve` shows it while editing.
docs: setup
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) $(LEGACY) $(OV2021) $(OV2022) $(IMX500) build dist site *.egg-info .editable.lock
