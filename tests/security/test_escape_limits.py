"""Low: with no options, a container still cannot take the host's tasks or memory.

Defaults (docs/security.md): 1024 tasks (pids.max) and a 1 GiB tmpfs each for the
writable layer and /tmp, instead of no task limit and two tmpfs of half the
host's RAM.  CONTAINERLAB_DEFAULT_PIDS_LIMIT and CONTAINERLAB_DEFAULT_STORAGE
change them (0: the old unlimited defaults), which is how the "guard removed"
half of each test runs.
"""

from __future__ import annotations

import os

import pytest
from escape import lab, run, escape_checks  # noqa: F401 - escape_checks: autouse

PIDS = "/sys/fs/cgroup/" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "/sys/fs/cgroup/pids/"
# 30 background sleeps, then how many run (pids.current less this shell; no fork to count them)
FORK_30 = ("n=0; while [ $n -lt 30 ]; do sleep 3 & n=$((n+1)); done; "
           f"read c < {PIDS}pids.current; echo started $((c-1)); kill -9 -1; wait")  # -1: all but PID 1


@pytest.fixture
def defaults(monkeypatch):
    def set_(pids: str | None = None, storage: str | None = None) -> None:
        for var, value in (("CONTAINERLAB_DEFAULT_PIDS_LIMIT", pids), ("CONTAINERLAB_DEFAULT_STORAGE", storage)):
            if value is None:
                monkeypatch.delenv(var, raising=False)
            else:
                monkeypatch.setenv(var, value)
    return set_


def test_a_container_gets_a_task_limit_by_default(defaults):
    defaults(pids="0")
    with lab() as engine:
        assert run(engine, ["sh", "-c", FORK_30]).stdout.split() == [b"started", b"30"]
    defaults(pids="20")  # the mechanism, with a limit small enough to try on a shared machine
    with lab() as engine:
        result = run(engine, ["sh", "-c", FORK_30])
    assert b"started" not in result.stdout and b"Resource temporarily unavailable" in result.stderr, result
    defaults()
    with lab() as engine:
        assert run(engine, ["cat", PIDS + "pids.max"]).stdout.strip() == b"1024"


def test_the_writable_layer_and_tmp_are_not_half_the_hosts_ram_each(defaults):
    df = ["sh", "-c", "df -k / /tmp | tail -n 2 | awk '{print $2}'"]
    with open("/proc/meminfo") as f:
        ram_kib = int(next(line.split()[1] for line in f if line.startswith("MemTotal:")))
    defaults(storage="0")
    with lab() as engine:
        unlimited = [int(kib) for kib in run(engine, df).stdout.split()]
    assert all(abs(kib - ram_kib // 2) < 1024 for kib in unlimited), (unlimited, ram_kib)  # tmpfs: half each
    defaults()
    with lab() as engine:
        sizes = [int(kib) for kib in run(engine, df).stdout.split()]
    assert len(sizes) == 2 and all(abs(kib - min(1 << 20, ram_kib // 4)) < 8 for kib in sizes), sizes  # pages
