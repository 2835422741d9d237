# Two commands on a fresh machine with Python >= 3.10, pip and make:
#   make demo   create .venv, install cmal, run Cluster-Margin vs Margin vs Random on bundled MNIST
#   make test   create/refresh .venv and run every test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cmal-installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: demo test setup clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,widgets]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/cmal run --dataset mnist --strategies cluster-margin,margin,random \
		--rounds 5 --batch-size 200 --seed-size 100 --seeds 3 --out runs/demo

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs build *.egg-info
