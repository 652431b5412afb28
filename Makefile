# Two commands matter: `make demo` and `make test`. Both bootstrap .venv from pinned requirements.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dejavu-installed
VIDEO ?=
OUT ?= demo_out

.PHONY: demo test install bench clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m dejavu.metrics.weights fetch
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dejavu demo -o $(OUT) $(if $(VIDEO),--video $(VIDEO),) $(if $(FORCE),--force,)

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(VENV)/bin/dejavu bench render

clean:
	rm -rf $(VENV) $(OUT)
