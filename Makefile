# The two commands of README.md. Both set up a fresh machine first (as root).
PYTHON ?= python3

.PHONY: setup test test-host test-v2 lab bench

setup:
	./scripts/setup

# The whole suite: everything on this kernel (cgroup v1 here), then the cgroup drivers and
# the runtime again on a cgroup v2 kernel in a VM.
test: setup
	$(PYTHON) -m pytest -v -rs tests
	bash tests/vm/run-cgroup-v2.sh -q tests/test_runtime.py

lab: setup
	./scripts/lab

bench: setup
	$(PYTHON) benchmarks/startup.py
