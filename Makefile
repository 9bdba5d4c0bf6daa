# Shortcuts; each target is the plain command the README gives.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test bench lint format clean

run:
	python3 -m venv $(VENV) && $(VENV)/bin/pip install -r requirements.txt && $(VENV)/bin/streamlit run server.py

test:
	python3 -m venv $(VENV) && $(VENV)/bin/pip install -r requirements-dev.txt && $(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(PY) -m pytest

bench:
	$(PY) -m bench.core && $(PY) -m bench.snapshot && $(PY) -m bench.collect && $(PY) -m bench.eventbridge && $(PY) -m bench.detections && $(PY) -m bench.ingest && $(PY) -m bench.pages

lint:
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
