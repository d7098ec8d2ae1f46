# The two commands of README.md. Both set up a fresh machine first (as root).
PYTHON ?= python3

.PHONY: setup test test-host test-v2 lab bench

setup:
	./scripts/setup

# The whole suite: everything on this kernel, then the cgroup v2 driver on a v2 kernel in a VM.
test: setup
	$(PYTHON) -m pytest -v -rs tests
	bash tests/vm/run-cgroup-v2.sh -q

lab: setup
	./scripts/lab

bench: setup
	$(PYTHON) benchmarks/startup.py
