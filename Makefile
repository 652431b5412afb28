# Two commands matter: `make demo` and `make test`. Both bootstrap .venv from pinned requirements.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dejavu-installed
VIDEO ?=
OUT ?= demo_out

.PHONY: demo test install bench clean test-oracles

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m dejavu.metrics.weights fetch
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dejavu demo -o $(OUT) $(if $(VIDEO),--video $(VIDEO),)

test: $(STAMP) test-oracles
	$(PY) -m pytest -q tests

# Test-only independent readers of exported splat files (npm: @playcanvas/splat-transform, pinned by the
# lockfile). Without npm the round-trip tests that need them skip and say so.
ORACLES := tests/oracles/node_modules/.bin/splat-transform
test-oracles: $(ORACLES)

$(ORACLES): tests/oracles/package.json tests/oracles/package-lock.json
	@if ! command -v npm >/dev/null; then echo "npm not found: splat-transform round-trip tests will skip"; \
	elif npm ci --prefix tests/oracles --no-audit --no-fund --ignore-scripts; then touch $@; \
	else echo "npm ci failed: splat-transform round-trip tests will skip"; fi

bench: $(STAMP)
	$(VENV)/bin/dejavu bench render

clean:
	rm -rf $(VENV) $(OUT)
