# Switchyard: `make up` runs the whole stack on this machine, `make test` runs every test.
# Both install what is missing first (uv from PyPI, then the locked workspace).

PYTHON ?= python3
UV      = $(PYTHON) -m uv
RUN     = $(UV) run --frozen --no-sync

.PHONY: install install-node install-browser screenshots up test lint typecheck unit e2e conformance docs bench bench-metering clean

install:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check "uv>=0.5"
	@$(UV) sync --all-packages --frozen --quiet

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

bench: install
	$(RUN) python -m bench.run

bench-metering: install
	$(RUN) python -m bench.metering

clean:
	rm -rf .data .pytest_cache .mypy_cache .ruff_cache
