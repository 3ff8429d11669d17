# The two commands of the README, and the pieces they are made of.
.PHONY: setup setup-dev demo test test-slow bench lint

PY := .venv/bin/python

setup:
	./scripts/setup.sh

setup-dev:
	./scripts/setup.sh --dev

# 1. Set up, start both services, fine-tune and OCR with and without the adapter.
demo: setup
	$(PY) -m ocrtune_devkit.demo

# 2. Set up and run the whole default test suite (what CI runs).
test: setup-dev
	$(PY) -m pytest

# The few full-size tests that are too slow for the default suite.
test-slow: setup-dev
	$(PY) -m pytest -m slow

lint: setup-dev
	$(PY) -m ruff check .
