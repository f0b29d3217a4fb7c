# Careloop: `make run` sets everything up and starts the app; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: run test lint typecheck install install-dev bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	CARELOOP_DEMO=1 $(BIN)/python manage.py prepare-demo
	CARELOOP_DEMO=1 $(BIN)/streamlit run app.py --server.port $(PORT) --server.headless true

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/mypy

typecheck: install-dev
	$(BIN)/mypy

test: install-dev lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# One benchmark at a time (each starts its own PostgreSQL); the README lists all of them. N patients.
N ?= 100000
bench: install-dev
	$(BIN)/python -m bench.seed_bench $(N)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
