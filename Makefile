# Two commands for a new user: `make demo` and `make test`.
# Both build .venv from pinned versions first (Python 3.11, no network beyond PyPI).
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
LAVA   := lava-nc==0.10.0
NORSE  := norse==1.1.0
export SNNC_DATA ?=

.PHONY: venv demo test bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	# lava-nc 0.10.0 declares Requires-Python <3.11 but runs on 3.11 with the shim in toolchain/lava_compat.py
	$(PY) -m pip install -q --no-deps --ignore-requires-python $(LAVA)
	# norse 1.1.0 declares torchvision (unused by its NIR importer; it would pull another torch build)
	$(PY) -m pip install -q --no-deps $(NORSE)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

demo: venv
	$(VENV)/bin/snnc demo

test: venv
	$(PY) -m pytest -q tests

bench: venv
	$(PY) benchmarks/train_speed.py

clean:
	rm -rf $(VENV) build *.egg-info
