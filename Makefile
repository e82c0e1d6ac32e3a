# Two commands, each complete on a fresh Debian / Raspberry Pi OS machine:
#   make demo   set everything up, then run a whole simulated building on 127.0.0.1
#   make test   set everything up, then run lint, type checks and the whole test suite
# They install what they need: Debian packages (mosquitto, python3-venv) when missing, a
# virtual environment in .venv and the Python packages.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test lint test-slow setup system-deps clean translations deb

demo: setup
	$(BIN)/nbedge demo

test: setup lint
	$(BIN)/pytest $(PYTEST_ARGS) || [ $$? -eq 5 ]  # 5: no tests collected (a filtered run)

test-slow: setup
	$(BIN)/pytest -m slow $(PYTEST_ARGS) || [ $$? -eq 5 ]

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Extract the texts people read, merge them into the catalogues, compile them (edge/locale).
translations: setup
	$(BIN)/python scripts/translations.py

# The Debian package of the gateway, build/deb/nbedge_<version>_<arch>.deb (docs/installer.md).
# Needs root: its virtual environment is made at /opt/nbedge in a private mount namespace. It
# needs the .venv (for the versions the tests ran with), not the test suite's Debian packages.
deb: $(STAMP)
	VENV=$(VENV) sh scripts/build-deb.sh

setup: system-deps $(STAMP)

system-deps:
	@sh scripts/install-system-deps.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,central,train]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache .hypothesis
