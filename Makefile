# The two commands of README.md. Both set up a fresh machine first (as root).
PYTHON ?= python3

.PHONY: setup test test-host test-v2 lab bench

setup:
	./scripts/setup

# The whole suite: everything on this kernel (cgroup v1 here), then the cgroup drivers, the
# runtime and the networks again on Debian's kernel in a VM: cgroup v2, and the netem qdisc
# (--net-delay, --net-loss) that this kernel lacks.
test: setup
	$(PYTHON) -m pytest -v -rs tests
	bash tests/vm/run-cgroup-v2.sh -q tests/test_runtime.py tests/test_network.py tests/test_network_engine.py

lab: setup
	./scripts/lab

bench: setup
	$(PYTHON) benchmarks/startup.py
