"""Per-container cost of the cgroup layer: create (with typical limits) + remove, and one stats() read.

    python benchmarks/cgroup_ops.py [N]

`measure(n)` returns the figures in milliseconds, for benchmarks/startup.py to include.
Needs root and a writable cgroup hierarchy; its groups are named bench-<pid>-<i> and removed.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from containerlab_magic.runtime.cgroups import open_manager
from containerlab_magic.runtime.spec import Limits

LIMITS = Limits(memory=64 << 20, cpus=0.5, pids_limit=64)


def measure(n: int = 200) -> dict:
    mgr = open_manager()
    if mgr is None:
        return {"error": "no writable cgroup hierarchy"}
    setup, teardown, stats, empty = [], [], [], []
    for i in range(n):
        name = f"bench-{os.getpid()}-{i}"
        t0 = time.perf_counter()
        cg = mgr.create(name, LIMITS)
        t1 = time.perf_counter()
        cg.stats()
        t2 = time.perf_counter()
        cg.remove()
        t3 = time.perf_counter()
        cg = mgr.create(name, Limits())
        t4 = time.perf_counter()
        cg.remove()
        setup.append(t1 - t0)
        stats.append(t2 - t1)
        teardown.append(t3 - t2)
        empty.append(t4 - t3)

    def ms(values: list[float]) -> float:
        return round(statistics.median(values) * 1000, 3)

    return {
        "cgroup_version": mgr.version,
        "create_with_limits_ms": ms(setup),
        "create_without_limits_ms": ms(empty),
        "remove_ms": ms(teardown),
        "create_plus_remove_ms": round(ms(setup) + ms(teardown), 3),
        "stats_read_ms": ms(stats),
        "runs": n,
    }


if __name__ == "__main__":
    result = measure(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
