# zhichao — every target installs what it needs into .venv on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all install test test-slow lint demo bench clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/pytest -q

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow     # the long variants; `make test` leaves them out

demo: $(STAMP)
	$(BIN)/zhichao demo

bench: $(STAMP)
	$(BIN)/python benchmarks/signal.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
