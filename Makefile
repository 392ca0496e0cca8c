# Switchyard: `make up` runs the whole stack on this machine, `make test` runs every test.
# Both install what is missing first (uv, then the locked workspace).

PYTHON ?= python3
# uv: the one on PATH (a standalone install), else the one this Python has as a module, else
# one in .tools, a venv of its own: a Python that is externally managed (PEP 668: current
# Debian, Ubuntu, Homebrew) refuses `pip install` outside a venv, and none is needed.
UV ?= $(or $(shell command -v uv 2>/dev/null),$(shell $(PYTHON) -m uv --version >/dev/null 2>&1 && echo "$(PYTHON) -m uv"),$(CURDIR)/.tools/bin/uv)
RUN     = $(UV) run --frozen --no-sync
# Tests that call uv themselves (tests/unit/test_deploy.py) use the same one.
export SWITCHYARD_UV = $(UV)

.PHONY: install install-node install-browser screenshots up test lint typecheck unit e2e conformance docs catalog bench bench-metering clean

install: $(if $(findstring /.tools/,$(UV)),.tools/bin/uv)
	@$(UV) sync --all-packages --frozen --quiet

.tools/bin/uv:
	@$(PYTHON) -m venv .tools
	@.tools/bin/python -m pip install --quiet --disable-pip-version-check "uv>=0.5"

# The official openai Node.js package, for the conformance scenarios (locked in tests/node).
install-node:
	@cd tests/node && npm ci --no-audit --no-fund --loglevel=error

# Chromium from the Debian packages, for the dashboard's browser tests (Playwright drives it;
# it never downloads a browser of its own).
install-browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

# docs/img: the dashboard's pages as the browser test sees them.
screenshots: install install-browser
	SWITCHYARD_SCREENSHOTS=docs/img $(RUN) pytest tests/e2e/test_dashboard.py

up: install
	$(RUN) python -m stack

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .

typecheck: install
	$(RUN) mypy shared services stack

unit: install
	$(RUN) pytest tests/unit

e2e: install install-browser
	$(RUN) pytest tests/e2e

test: install install-node install-browser lint typecheck
	$(RUN) pytest

conformance: install install-node
	$(RUN) pytest tests/conformance tests/sims

# docs/compatibility.md is generated from the conformance matrix (tests/conformance/matrix.py).
docs: install
	$(RUN) python -m tests.conformance.report > docs/compatibility.md

# shared/catalog_prices.json from the pricing dataset (genai-prices in uv.lock; after
# `uv lock --upgrade-package genai-prices`), printing what changed (docs/catalog.md).
catalog: install
	$(RUN) python -m shared.catalog_build $(if $(DATASET),--dataset $(DATASET))

bench: install
	$(RUN) python -m bench.run

bench-metering: install
	$(RUN) python -m bench.metering

clean:
	rm -rf .data .pytest_cache .mypy_cache .ruff_cache .hypothesis
