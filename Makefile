# zhichao — every target installs what it needs into .venv on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all install system test test-slow lint demo bench clean train-plates

all: test

# Debian packages the software, the tests and the simulated devices use: a CJK font for the
# plates the simulated camera draws and for the procedure's documents, Pango and HarfBuzz's
# font subsetter for WeasyPrint (documents to PDF; without the subsetter a document takes
# about ten times as long), socat for serial links between pseudo-terminals, poppler-utils
# (pdftotext) for the tests that read the documents back, chromium and chromium-driver for
# the tests that drive the center's web pages in a real browser (Selenium, headless), and
# prometheus, whose server the metrics tests run on a temporary config (its own service,
# which the package enables, is not needed by zhichao).
DEBS := fonts-wqy-zenhei socat libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 \
        poppler-utils chromium chromium-driver prometheus

system:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# What the software needs to run (the demo needs no more); then the tests' tools, the
# second plate engine and the classifier's training on top.
BASE   := $(VENV)/.installed-base

$(BASE): pyproject.toml | system
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(BASE)

$(STAMP): $(BASE)
	$(BIN)/pip install --quiet -e '.[dev,paddle,train]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/pytest -q

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow     # the long variants; `make test` leaves them out

demo: $(BASE)
	$(BIN)/zhichao demo

bench: $(STAMP)
	$(BIN)/python benchmarks/signal.py
	$(BIN)/python benchmarks/serial.py
	$(BIN)/python benchmarks/plates.py
	$(BIN)/python benchmarks/transport.py
	$(BIN)/python benchmarks/cameras.py
	$(BIN)/python benchmarks/latency.py
	$(BIN)/python benchmarks/registry.py
	$(BIN)/python benchmarks/web.py --pg "$${ZHICHAO_TEST_PG:-postgresql://postgres@127.0.0.1:5432/postgres}"

# The plate reader's province classifier, trained again from synthetic plates on the CPU
# (training/; about 7 minutes on 2 cores) and written where the reader loads it, with
# PyTorch at the one version the committed model was trained with (the 'train' extra,
# which make test installs too, for the training's own test). The model card
# (plates/models/province.md) says within what margin a retrain reproduces its figures.
train-plates: $(BASE)
	$(BIN)/pip install --quiet -e '.[train]'
	$(BIN)/python -m training.province --out plates/models/province.onnx

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
