# Two commands matter: `make demo` and `make test`. Both bootstrap .venv from pinned requirements.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dejavu-installed
VIDEO ?=
OUT ?= demo_out

WEB_BUNDLE := dejavu/web/static/player.js

.PHONY: demo test install bench clean web test-oracles

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m dejavu.metrics.weights fetch
	touch $(STAMP)

# The browser player (`dejavu web`): three.js + Spark + web/src bundled by esbuild from the locked npm
# packages. Without npm it is skipped with a note (`dejavu web` then says to run `make web`; tests/web skip).
web: $(WEB_BUNDLE)

$(WEB_BUNDLE): package.json package-lock.json web/build.mjs web/index.html $(wildcard web/src/*.js)
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --no-audit --no-fund --loglevel=error && node web/build.mjs; \
	else \
		echo "npm not found: the web player (dejavu web) is not built"; \
	fi

demo: $(STAMP) $(WEB_BUNDLE)
	$(VENV)/bin/dejavu demo -o $(OUT) $(if $(VIDEO),--video $(VIDEO),) $(if $(FORCE),--force,)

test: $(STAMP) $(WEB_BUNDLE) test-oracles
	$(VENV)/bin/lint-imports --no-cache
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
	rm -rf $(VENV) $(OUT) node_modules dejavu/web/static
