# Switchyard: `make up` runs the whole stack on this machine, `make test` runs every test.
# Both install what is missing first (uv from PyPI, then the locked workspace).

PYTHON ?= python3
UV      = $(PYTHON) -m uv
RUN     = $(UV) run --frozen --no-sync

.PHONY: install install-node up test lint typecheck unit e2e conformance docs bench bench-metering clean

install:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check "uv>=0.5"
	@$(UV) sync --all-packages --frozen --quiet

# The official openai Node.js package, for the conformance scenarios (locked in tests/node).
install-node:
	@cd tests/node && npm ci --no-audit --no-fund --loglevel=error

up: install
	$(RUN) python -m stack

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .

typecheck: install
	$(RUN) mypy shared services stack

unit: install
	$(RUN) pytest tests/unit

e2e: install
	$(RUN) pytest tests/e2e

test: install install-node lint typecheck
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
