# Switchyard: `make up` runs the whole stack on this machine, `make test` runs every test.
# Both install what is missing first (uv from PyPI, then the locked workspace).

PYTHON ?= python3
UV      = $(PYTHON) -m uv
RUN     = $(UV) run --frozen --no-sync

.PHONY: install up test lint typecheck unit e2e bench bench-metering clean

install:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check "uv>=0.5"
	@$(UV) sync --all-packages --frozen --quiet

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

test: install lint typecheck
	$(RUN) pytest

bench: install
	$(RUN) python -m bench.run

bench-metering: install
	$(RUN) python -m bench.metering

clean:
	rm -rf .data .pytest_cache .mypy_cache .ruff_cache
