# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# Both build .venv/ once; later runs see an up-to-date stamp and return at once.
# `make test-fast` runs the unit tests only (no tool processes, trainings, SLURM or Detectron2
# training: the `integration` marker), for the edit-test loop.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
INSTALL_INPUTS := requirements.txt requirements-test.txt setup.cfg pyproject.toml Makefile \
                  tools/install_detectron2.py
PIP := $(PY) -m pip --quiet --disable-pip-version-check

.PHONY: install demo test test-fast test-slow bench-peers clean-venv

install: $(STAMP)

$(STAMP): $(INSTALL_INPUTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip "setuptools<81" wheel
	$(PIP) install -r requirements.txt
	$(PIP) install -r requirements-test.txt
	$(PY) tools/install_detectron2.py
	$(PIP) install --no-build-isolation -e .
	$(PY) -m detection
	@touch $(STAMP)

demo: install
	$(PY) tools/demo.py $(ARGS)

# One pytest-xdist worker per core (tests/conftest.py shares the cores out; the SLURM tests keep to
# one worker, `loadgroup`). ARGS="-n 0" runs in one process.
XDIST := -n auto --dist loadgroup

test: install
	$(PY) -m pytest $(XDIST) -m "not slow and not gpu" $(ARGS)

test-fast: install
	$(PY) -m pytest $(XDIST) -m "not slow and not gpu and not integration" $(ARGS)

test-slow: install
	$(PY) -m pytest $(XDIST) -m "slow" $(ARGS)

# The peer library bench/peers.py compares with (optional: make test never installs it), pinned
# beside our torch pair so it cannot pull another torch build.
bench-peers: install
	$(PIP) install -c requirements.txt lightly==1.6.0

clean-venv:
	rm -rf $(VENV)
