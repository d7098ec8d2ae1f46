"""A bystander's start latency while another container exhausts what it is given.

    python benchmarks/attacks.py [--runs 30] [--json PATH]

On a shared JupyterHub node one student's container fills its storage, forks
to its pids limit, allocates past its memory limit again and again, opens fds
until it may not, floods its output or writes one line that never ends, and
everyone else must still start containers quickly.  For each attack this
starts the attacker detached (with the limits a course would give), lets it
reach its steady state, then times `/bin/true` in busybox started meanwhile by
two bystanders: one through the attacker's own engine and shim (a cell of the
same notebook: the shim that pumps the attacker's output also starts the
bystander) and one through a second engine (another user's kernel on the same
node).  The two take turns, as every benchmark here does, and each attack is
compared with the quiet baseline of the same run as a ratio.  The attacker must
still be running (or dying and restarting, as the memory one does) when the
measurement ends, or the row says it was not under attack at all.

Nothing is asserted about the figures (tests/test_benchmark_attacks.py checks
the shape); the exit status is non-zero only when the benchmark itself broke or
an attacker left anything behind.  Needs root; uses a private state root under
/var/tmp (a flood's log lands on disk, not in the RAM of /run) and removes it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from containerlab_magic.runtime.engine import Engine
from containerlab_magic.runtime.spec import ContainerSpec, Limits

MiB = 1 << 20
WARMUP = 3  # untimed starts of each engine first (its shim's first imports and spares)
SETTLE = 1.0  # seconds an attacker runs before the bystanders are timed

# (name, command, limits, image): each runs in busybox (or the host image for Python)
ATTACKS = [
    ("quiet (baseline)", None, None, "busybox"),
    ("fills its storage", ["sh", "-c", "while :; do dd if=/dev/zero of=/tmp/fill bs=1M 2>/dev/null; "
                           "rm -f /tmp/fill; done"], Limits(storage_size=64 * MiB), "busybox"),
    ("forks to its pids limit", ["python3", "-c",
                                 "import os, time\n"
                                 "while True:\n"
                                 "    try:\n"
                                 "        if os.fork() == 0:\n"
                                 "            time.sleep(600)\n"
                                 "            os._exit(0)\n"
                                 "    except OSError:\n"
                                 "        time.sleep(0.001)\n"], Limits(pids_limit=64), "host"),
    ("allocates past its memory limit", ["python3", "-c",
                                         "import subprocess, sys\n"
                                         "while True:\n"  # each child is OOM-killed; PID 1 goes on
                                         "    subprocess.run([sys.executable, '-c', 'x = bytearray(200 << 20)'])\n"],
     Limits(memory=64 * MiB), "host"),
    ("opens fds to its limit", ["python3", "-c",
                                "import os, resource, time\n"
                                "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
                                "resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))\n"
                                "fds = []\n"
                                "try:\n"
                                "    while True: fds.append(os.open('/dev/null', os.O_RDONLY))\n"
                                "except OSError: pass\n"
                                "time.sleep(600)\n"], Limits(), "host"),
    ("floods stdout", ["yes", "a line of output from a flooding container"], Limits(), "busybox"),
    ("writes a never-ending line", ["sh", "-c", "yes | tr -d '\\n'"], Limits(), "busybox"),
    ("burns its CPUs", ["sh", "-c", "while :; do :; done & while :; do :; done"], Limits(cpus=1.0), "busybox"),
]


def bystander(engine: Engine) -> float:
    """Milliseconds from run() to exit of /bin/true in busybox."""
    started = time.perf_counter()
    result = engine.run(ContainerSpec(["/bin/true"], image="busybox")).wait(timeout=60)
    elapsed = (time.perf_counter() - started) * 1000
    if result.exit_code != 0:
        raise RuntimeError(f"the bystander failed: {result.describe()}")
    return elapsed


def summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered), 2),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
            "worst_ms": round(ordered[-1], 2), "n": len(ordered)}


def measure(attack, same: Engine, other: Engine, runs: int) -> dict:
    name, command, limits, image = attack
    box = None
    if command is not None:
        box = same.run(ContainerSpec(command, image=image, limits=limits, detach=True, name="attacker"))
        time.sleep(SETTLE)
    try:
        rows = {"same shim": [], "other shim": []}
        for _ in range(runs):
            rows["same shim"].append(bystander(same))
            rows["other shim"].append(bystander(other))
        under_attack = box is None or same.inspect("attacker")["status"] == "running"
    finally:
        if box is not None:
            same.rm("attacker", force=True)
    return {"attack": name, "under_attack": under_attack, **{k: summary(v) for k, v in rows.items()}}


def leftovers(state: str, timeout: float = 10.0) -> list[str]:
    """What the closed engines' shims left in the state root (they end within timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for kind in ("containers", "cgroups"):
            try:
                left += [f"{kind[:-1]} {name[:12]}" for name in os.listdir(os.path.join(state, kind))]
            except FileNotFoundError:
                pass
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="bystander starts per engine and attack (default 30)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--only", action="append", metavar="WORDS",
                        help="only attacks whose name contains WORDS (repeatable; the baseline always runs)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if os.geteuid() != 0:
        print("attacks.py needs root (namespaces, mounts, cgroups)", file=sys.stderr)
        return 2
    attacks = [a for a in ATTACKS if a[1] is None or not args.only or any(w in a[0] for w in args.only)]
    state = tempfile.mkdtemp(prefix="containerlab-attacks-", dir="/var/tmp")
    os.environ["CONTAINERLAB_LOG_SIZE"] = os.environ.get("CONTAINERLAB_LOG_SIZE", str(16 * MiB))
    same = Engine(state_dir=state)
    other = Engine(state_dir=state)
    rows, status = [], 0
    print(f"bystander start latency under attack: /bin/true in busybox, {args.runs} runs per engine and attack")
    print(f"  {'attack':<34}{'same shim p50/p95/worst ms':>30}{'other shim p50/p95/worst ms':>31}  ratio p50")
    try:
        for _ in range(WARMUP):
            bystander(same), bystander(other)
        for attack in attacks:
            row = measure(attack, same, other, args.runs)
            rows.append(row)
            base = rows[0]
            ratios = "/".join(f"{row[k]['p50_ms'] / base[k]['p50_ms']:.2f}x" for k in ("same shim", "other shim"))
            cells = "".join(f"{row[k]['p50_ms']:>10.2f}{row[k]['p95_ms']:>9.2f}{row[k]['worst_ms']:>10.2f}"
                            for k in ("same shim", "other shim"))
            note = "" if row["under_attack"] else "  (the attacker had ended: not under attack)"
            print(f"  {row['attack']:<34}{cells}   {ratios}{note}", flush=True)
    finally:
        same.close()
        other.close()
        left = leftovers(state)
        shutil.rmtree(state, ignore_errors=True)
    worst = max(rows[1:], key=lambda r: r["same shim"]["worst_ms"], default=None)
    if worst:
        print(f"\nworst bystander start: {worst['same shim']['worst_ms']} ms (same shim, while it {worst['attack']})")
    if left:
        print(f"left behind: {', '.join(left)}", file=sys.stderr)
        status = 1
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": args.runs, "rows": rows, "left": left}, f, indent=1)
    return status


if __name__ == "__main__":
    sys.exit(main())
