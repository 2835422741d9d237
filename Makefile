# Two commands on a fresh machine with Python >= 3.10, pip and make:
#   make demo   create .venv, install cmal, run Cluster-Margin vs Margin vs Random on bundled MNIST
#   make test   create/refresh .venv and run every test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cmal-installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: demo test test-oldest lab setup chromium clean docs wheelhouse

# pip and setuptools talk a lot (deprecation notes, the editable-install banner): their output goes to a log, and
# only a failure shows it.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing cmal and its dependencies into $(VENV) (log: $(VENV)/install.log)"
	@{ $(BIN)/python -m pip install --upgrade pip && \
	   $(BIN)/python -m pip install -e ".[dev,widgets,scale,docs]"; } > $(VENV)/install.log 2>&1 || \
	 { tail -40 $(VENV)/install.log; echo "installing failed: the whole log is $(VENV)/install.log"; exit 1; }
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/cmal run --dataset mnist --strategies cluster-margin,margin,random \
		--rounds 5 --batch-size 200 --seed-size 100 --seeds 3 --out runs/demo

# The browser test needs Chromium; CI runs as root on Debian, where apt can install it. Elsewhere the test is
# skipped and says why.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		{ apt-get install -y -qq chromium >/dev/null 2>&1 || \
		  { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }; }; } || \
		echo "Chromium could not be installed: the browser test will be skipped"

# The oldest-TensorFlow tests run beside the main suite (its log is printed at the end): the main suite keeps
# about 1.5 of the 2 cores busy (70 CPU-minutes in 46 minutes, measured 2026-12-07), and the installation of the
# second environment is mostly waiting on disk.
test: setup chromium
	@mkdir -p runs; \
	$(MAKE) --no-print-directory test-oldest > runs/test-oldest.log 2>&1 & oldest=$$!; \
	$(BIN)/python -m pytest -q --durations=25; main=$$?; \
	wait $$oldest; old=$$?; \
	echo "--- make test-oldest, run beside the tests above (runs/test-oldest.log) ---"; cat runs/test-oldest.log; \
	[ $$old -eq 0 ] || echo "make test-oldest FAILED"; \
	[ $$main -eq 0 ] && [ $$old -eq 0 ]

# The other end of the supported range: the tests that exercise TensorFlow and Keras (models, training, the
# distributed round, saved models and state, the loop, sessions, your-data layouts, start-up) on
# Python 3.12 with the oldest TensorFlow cmal supports (constraints/oldest.txt), as on Colab or a TPU VM with an
# older TensorFlow. The rest of the suite (selection, HAC, kNN, the CLI, notebooks, widgets, browsers,
# benchmarks, Dask, fuzzing, lint, data loading, the import rules, the stage cache) is numpy-level or needs the
# extras, and runs on the newest versions only, to keep
# make test within its time.
OLDEST_VENV := .venv-oldest
OLDEST_TESTS := $(addprefix tests/test_,models.py training.py distribute.py tf_startup.py saved_work.py loop.py \
                  session.py your_data.py)
OLDEST_PYTHON ?= $(shell for p in python3.12 $(HOME)/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12; do \
                   $$p -c 'import sys; print(sys.executable)' 2>/dev/null && break; done)
$(OLDEST_VENV)/.cmal-installed: pyproject.toml constraints/oldest.txt
	@test -x $(OLDEST_VENV)/bin/python || $(OLDEST_PYTHON) -m venv $(OLDEST_VENV)
	@echo "installing cmal with the oldest supported TensorFlow into $(OLDEST_VENV) (log: $(OLDEST_VENV)/install.log)"
	@{ $(OLDEST_VENV)/bin/python -m pip install --upgrade pip && \
	   $(OLDEST_VENV)/bin/python -m pip install -c constraints/oldest.txt -e ".[dev]"; } > $(OLDEST_VENV)/install.log 2>&1 || \
	 { tail -40 $(OLDEST_VENV)/install.log; echo "installing failed: see $(OLDEST_VENV)/install.log"; exit 1; }
	@touch $@

test-oldest:
	@if [ -z "$(OLDEST_PYTHON)" ]; then \
	  echo "test-oldest SKIPPED: no Python 3.12 here (pyenv install 3.12, or set OLDEST_PYTHON=/path/to/python3.12);"; \
	  echo "  the oldest supported TensorFlow was not tested"; \
	else \
	  $(MAKE) --no-print-directory $(OLDEST_VENV)/.cmal-installed OLDEST_PYTHON=$(OLDEST_PYTHON) && \
	  $(OLDEST_VENV)/bin/python -c "import sys, tensorflow as tf, keras, numpy; print('oldest supported: Python', \
	    sys.version.split()[0], '| TensorFlow', tf.__version__, '| Keras', keras.__version__, '| numpy', numpy.__version__)" \
	    2>/dev/null && \
	  $(OLDEST_VENV)/bin/python -m pytest -q -o addopts="-p no:cacheprovider" $(OLDEST_TESTS) --durations=10; \
	fi

# The site, offline, into docs/_build/html (open docs/_build/html/index.html). Notebooks execute once and are
# cached in docs/_build/.jupyter_cache; CMAL_DOCS_EXECUTE=off renders them without outputs (seconds),
# CMAL_DOCS_EXECUTE=force executes them again. `make test` builds the site too (tests/docs/test_site.py).
docs: setup
	$(BIN)/sphinx-build -q -n -W --keep-going -b html -c docs . docs/_build/html
	@echo "site: docs/_build/html/index.html"

# Every wheel a workshop room needs to install cmal with the notebook series' extras, offline, from a USB stick:
#   pip install --no-index --find-links wheelhouse "cmal[widgets,scale,dev]"
# Build it on a machine with the room's operating system, CPU architecture and Python version.
wheelhouse: setup
	@echo "writing wheels for cmal[widgets,scale,dev] and every dependency into wheelhouse/"
	@$(BIN)/python -m pip wheel --quiet -w wheelhouse ".[widgets,scale,dev]" > $(VENV)/wheelhouse.log 2>&1 || \
	 { tail -40 $(VENV)/wheelhouse.log; exit 1; }
	@echo "wheelhouse/: $$(ls wheelhouse | wc -l) wheels, $$(du -sh wheelhouse | cut -f1); in the room:"
	@echo '  python -m venv .venv && .venv/bin/pip install --no-index --find-links wheelhouse "cmal[widgets,scale,dev]"'

lab: setup
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

clean:
	rm -rf $(VENV) $(OLDEST_VENV) runs build *.egg-info wheelhouse
