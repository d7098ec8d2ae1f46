# The two commands of README.md. Both set up a fresh machine first (as root).
PYTHON ?= python3

.PHONY: setup test lab bench

setup:
	./scripts/setup

test: setup
	$(PYTHON) -m pytest -v -rs tests

lab: setup
	./scripts/lab

bench: setup
	$(PYTHON) benchmarks/startup.py
