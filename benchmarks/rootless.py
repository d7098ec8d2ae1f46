"""Start-to-exit latency of /bin/true in busybox: the rootless rung against root, in one run.

    python benchmarks/rootless.py [--rounds 6] [--runs 25] [--json PATH]

The same worker (an Engine, one shim, `engine.run(spec).wait()` timed per run)
runs as root and as two unprivileged users, made for the run when missing and
removed after, as the tests do: `clabtest` has /etc/subuid ranges (the
rootless-multi-id rung), `clabtest1` none (single-id).  All use the system Python
and the same copy of the package.  Each contender is an Engine with prewarm on (the next
PID 1 ready: the notebook case) or off (every run pays clone, namespaces and
rootfs).  Rounds take turns in a shuffled order, so machine noise hits all four
alike; between runs a worker pauses 50 ms, untimed (the quiet in which a spare
is made).  The goal (issue 13) is rootless within 1.3x of root, prewarmed and cold.

Needs root (setpriv).  Everything made lives in one temp dir, removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from pod import users  # noqa: E402  (the tests' real unprivileged user)

WORKER = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
from containerlab_magic.runtime.engine import Engine
from containerlab_magic.runtime.spec import ContainerSpec
state, data, mode, runs = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
engine = Engine(state_dir=state, data_dir=data, prewarm=mode == "prewarmed")
spec = ContainerSpec(["/bin/true"], image="busybox")
samples = []
try:
    engine.start()
    for i in range(3 + runs):
        time.sleep(0.05)
        started = time.perf_counter()
        result = engine.run(spec).wait()
        elapsed = (time.perf_counter() - started) * 1000
        if result.exit_code != 0:
            raise SystemExit(f"true exited {result.exit_code}")
        if i >= 3:
            samples.append(elapsed)
finally:
    engine.close()
print(json.dumps(samples))
"""

# "root, no cgroups" (CONTAINERLAB_CGROUPS=off) is root doing what the rootless rung does
# (namespaces, no cgroup): the ratio against it is the cost of the user namespace itself.
# "rootless multi-id" is a user with /etc/subuid ranges (newuidmap maps them at each clone),
# "rootless single-id" one without (PID 1 maps its one id itself).
WHO = ("root", "root, no cgroups", "rootless multi-id", "rootless single-id")
CONTENDERS = [(who, mode) for who in WHO for mode in ("prewarmed", "cold")]


def _worker(who: str, mode: str, runs: int, source: str, dirs: dict, accounts: dict) -> list[float]:
    state, data, home = dirs["root" if who in ("root", "root, no cgroups") else who]
    argv = [users.SYSTEM_PYTHON, "-I", "-c", WORKER, source, state, data, mode, str(runs)]
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    if who in accounts:
        user = accounts[who]
        argv = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", *argv]
        env["HOME"] = home
    elif who == "root, no cgroups":
        env["CONTAINERLAB_CGROUPS"] = "off"
    ran = subprocess.run(argv, capture_output=True, text=True, env=env, cwd="/", timeout=600)
    if ran.returncode != 0:
        raise RuntimeError(f"{who} {mode}: exit {ran.returncode}: {ran.stderr.strip()[-500:]}")
    return json.loads(ran.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--runs", type=int, default=25, help="timed runs per contender per round")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    if users.why_not():
        print(f"rootless benchmark unavailable: {users.why_not()}")
        return 0
    accounts = {"rootless multi-id": users.ensure_user(users.TEST_USER),
                "rootless single-id": users.ensure_user(users.SINGLE_ID_USER)}
    work = tempfile.mkdtemp(prefix="clab-bench-rootless-")
    os.chmod(work, 0o755)
    source = users.package_copy()
    dirs = {"root": (os.path.join(work, "root-state"), os.path.join(work, "root-data"), "")}
    for who, user in accounts.items():
        home = os.path.join(work, user.pw_name)
        os.mkdir(home, 0o700)
        os.chown(home, user.pw_uid, user.pw_gid)
        dirs[who] = (os.path.join(home, "state"), os.path.join(home, "data"), home)
    samples: dict[tuple[str, str], list[float]] = {c: [] for c in CONTENDERS}
    rng = random.Random(13)
    try:
        for _ in range(args.rounds):
            order = CONTENDERS[:]
            rng.shuffle(order)
            for who, mode in order:
                samples[(who, mode)] += _worker(who, mode, args.runs, source, dirs, accounts)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(source, ignore_errors=True)
        users.remove_created()
    rows = {f"{who} {mode}": {"p50_ms": round(statistics.median(v), 2),
                              "p95_ms": round(sorted(v)[int(len(v) * 0.95) - 1], 2), "n": len(v)}
            for (who, mode), v in samples.items()}
    print(f"start to exit of /bin/true in busybox, {args.rounds} rounds x {args.runs} runs, shuffled turns")
    print(f"  {'contender':30} {'p50 ms':>8} {'p95 ms':>8}")
    for name, row in rows.items():
        print(f"  {name:30} {row['p50_ms']:8.2f} {row['p95_ms']:8.2f}")
    targets = {}
    print("targets (ratios of p50; goal <= 1.3):")
    for who in WHO[2:]:
        for base in ("root", "root, no cgroups"):
            for mode in ("prewarmed", "cold"):
                value = round(rows[f"{who} {mode}"]["p50_ms"] / rows[f"{base} {mode}"]["p50_ms"], 2)
                label = f"{who} / {base}, {mode}"
                targets[label] = value
                print(f"  {label:50} {value:5.2f}x  {'ok' if value <= 1.3 else 'MISSED'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "targets": targets}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
