# The two commands of README.md (`make lab`, `make test`), both set up a fresh machine
# first (as root); `make test-fast` and `make bench` for developers.
PYTHON ?= python3
# The code under test is this checkout's, whichever checkout pip installed.
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
PYTEST = $(PYTHON) -m pytest -p no:cacheprovider -rs
# The files the cgroup v2 VM runs besides tests/test_cgroups.py: the runtime and the
# networks again, on a kernel with cgroup v2 and the netem qdisc this one lacks, and the
# escape tests whose guards differ on v2 (the device BPF program, delegated limits).
VM_TESTS = tests/test_runtime.py tests/test_network.py tests/test_network_engine.py \
	tests/security/test_device_bpf.py tests/security/test_escape_devices.py tests/security/test_escape_limits.py

.PHONY: setup test test-fast lab bench reliability

setup:
	./scripts/setup

# Everything, as CI runs it: the whole suite on this kernel (cgroup v1 here), then the
# cgroup drivers, the runtime and the networks on Debian's kernel in a VM.  Both parts
# run even when the first fails; the status is non-zero if either failed, and a run in
# which no test passed (all skipped, say, as non-root) fails too (tests/conftest.py).
test: export CONTAINERLAB_REQUIRE_PASSES = 1
test: setup
	@status=0; \
	$(PYTEST) -v tests || status=$$?; \
	bash tests/vm/run-cgroup-v2.sh -q $(VM_TESTS) || status=$$?; \
	if [ $$status -ne 0 ]; then echo "make test: FAILED (exit $$status; see above)" >&2; fi; \
	exit $$status

# The inner loop: no VM, no browser (tests/test_jupyterlab.py), nothing marked slow.
test-fast: export CONTAINERLAB_REQUIRE_PASSES = 1
test-fast: setup
	$(PYTEST) -q -m "not slow" --ignore=tests/test_jupyterlab.py tests

lab: setup
	./scripts/lab

bench: setup
	$(PYTHON) benchmarks/startup.py
	$(PYTHON) benchmarks/rootless.py
	$(PYTHON) benchmarks/oci.py

# The figures of README's "Reliability" section, in full (CI runs a short version of
# each in make test): the 1000-cycle soak, a bystander's start under each attack, the
# fuzzers with ten times the examples, and every injected fault.
reliability: setup
	$(PYTHON) benchmarks/soak.py --cycles 1000
	$(PYTHON) benchmarks/attacks.py --runs 30
	CONTAINERLAB_FUZZ_SCALE=10 $(PYTEST) -q -s tests/test_fuzz.py tests/test_faults.py tests/test_concurrency.py
