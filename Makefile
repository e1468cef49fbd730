# Set-up contract: `make demo` and `make test` work from a fresh clone (they create .venv if missing).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test test-all bench clean lint

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,web,ledger,images,llm,postgres,report,tune,gen]'
	$(BIN)/pip install -q 'ray>=2.9' || echo "note: ray could not be installed; the Ray backend tests will be skipped"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/unlearnlab run --dataset digits --forget class:3 --methods all --seeds 3

# Tests run in one process per core (pytest-xdist); each test file stays on one worker, so a module's trained
# fixtures are built once. Tests pin torch to 1 thread (tests/conftest.py), so the workers do not oversubscribe.
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -n auto --maxprocesses 4 --dist loadfile tests

test-all: $(STAMP)
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) .pytest_cache build dist src/*.egg-info results .unlearnlab
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
