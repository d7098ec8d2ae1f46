"""`run` of an OCI bundle (/bin/true in busybox) by runc, crun and containerlab-magic-runtime.

    python benchmarks/oci.py [--rounds 5] [--runs 10] [--json PATH]

Every contender is a whole process, forked and waited for as an OCI tool (podman,
containerd's shim) would: `RUNTIME --root STATE run --bundle B ID`, which makes the
container, runs it to its end and deletes it.  Each runtime runs its own `spec`
default (args /bin/true, terminal off) on the same busybox rootfs, read-write.
Rounds take turns in a shuffled order, so machine noise hits all alike.

Ours is measured twice: with its daemon shim lingering between calls (the default:
the first call starts it, later ones find it) and with a cold shim every call
(CONTAINERLAB_DAEMON_LINGER=0).  Where a Python runtime's time goes is measured
beside them: the interpreter alone (`python -I -c pass`) and the interpreter with
the runtime's imports (`features`, which starts no container).

runc and crun put their cgroup under the lab's subtree (_tools.OCIRuntime); crun
1.8 refuses this host's hybrid cgroup layout, so it runs in a private mount
namespace without the cgroup2 mount (_tools.MountNamespace).  Needs root.
Everything made lives in one temp dir, removed at the end.
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
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import _tools  # noqa: E402
import startup  # noqa: E402
from containerlab_magic.runtime.images.builtin import BusyboxImage  # noqa: E402

SCRIPT = "containerlab-magic-runtime"


def runtime_script(venv: startup.Venv) -> str:
    """The console script as pip writes it, in the benchmark's venv (this checkout on its path)."""
    module, function = startup._entry_point(SCRIPT)
    path = os.path.join(venv.dir, "bin", SCRIPT)
    with open(path, "w") as f:
        f.write(f"#!{venv.python}\nimport sys\nfrom {module} import {function}\nsys.exit({function}())\n")
    os.chmod(path, 0o755)
    return path


class Ours(_tools.Contender):
    """containerlab-magic-runtime run, its shim lingering (warm) or not (cold)."""

    def __init__(self, script: str, rootfs: str, workdir: str, warm: bool):
        self.script, self.rootfs, self.warm = script, rootfs, warm
        label = "warm" if warm else "cold"
        self.name = f"containerlab-magic-runtime run ({label} shim)"
        self.bundle = os.path.join(workdir, f"bundle-ours-{label}")
        self.state = os.path.join(workdir, f"state-ours-{label}")
        self.env = dict(os.environ, CONTAINERLAB_DAEMON_LINGER="60" if warm else "0")
        self.count = 0

    def prepare(self) -> None:
        os.makedirs(self.bundle)
        self._call("spec", "--bundle", self.bundle)
        path = os.path.join(self.bundle, "config.json")
        with open(path) as f:
            config = json.load(f)
        config["process"]["args"] = ["/bin/true"]
        config["root"] = {"path": self.rootfs, "readonly": False}
        with open(path, "w") as f:
            json.dump(config, f, indent=1)
        self.once()

    def _call(self, *args: str) -> None:
        ran = subprocess.run([self.script, "--root", self.state, *args], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self.env, cwd="/", timeout=60)
        if ran.returncode != 0:
            last = ran.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["(no message)"]
            raise _tools.Unavailable(f"containerlab-magic-runtime {args[0]} exited {ran.returncode}: {last[0]}")

    def once(self) -> None:
        self.count += 1
        self._call("run", "--bundle", self.bundle, f"bench-{os.getpid()}-{self.count}")

    def close(self) -> None:
        """Its shim, if it still lingers: by the pid its state names (our own process)."""
        for pid in _shims(self.state):
            os.kill(pid, 9)


class Interpreter(_tools.Contender):
    """Python start-up alone, and with the runtime's imports (`features`: no container)."""

    def __init__(self, script: str, python: str, with_imports: bool):
        self.argv = [script, "features"] if with_imports else [python, "-I", "-c", "pass"]
        self.name = f"{SCRIPT} features" if with_imports else "python -I -c pass"

    def prepare(self) -> None:
        self.once()

    def once(self) -> None:
        _tools.run_tool(self.argv)


def _shims(state: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"containerlab_magic.runtime.shim" in cmd and state.encode() in cmd:
            found.append(int(pid))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10, help="timed runs per contender per round")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("oci benchmark unavailable: runc and crun run as root here (run it as root)")
        return 0
    work = tempfile.mkdtemp(prefix="clab-bench-oci-")
    venv = startup.Venv()
    script = runtime_script(venv)
    rootfs = os.path.join(work, "rootfs")
    BusyboxImage().build(rootfs)
    parents = _tools.CgroupParents(keep=set())
    namespace = _tools.MountNamespace()
    contenders: list[_tools.Contender] = [
        Ours(script, rootfs, work, warm=True), Ours(script, rootfs, work, warm=False),
        _tools.OCIRuntime("runc", rootfs, work), Interpreter(script, venv.python, False),
        Interpreter(script, venv.python, True)]
    unavailable: dict[str, str] = {}
    try:
        try:
            namespace.start()
            contenders.append(_tools.OCIRuntime("crun", rootfs, work, via_nsenter=namespace))
        except _tools.Unavailable as e:
            unavailable["crun run"] = str(e)
        ready = []
        for contender in contenders:
            try:
                contender.prepare()
                ready.append(contender)
            except _tools.Unavailable as e:
                unavailable[contender.name] = str(e)
        samples: dict[str, list[float]] = {c.name: [] for c in ready}
        rng = random.Random(17)
        for _ in range(args.rounds):
            order = ready[:]
            rng.shuffle(order)
            for contender in order:
                for _ in range(args.runs):
                    started = time.perf_counter()
                    contender.once()
                    samples[contender.name].append((time.perf_counter() - started) * 1000)
    finally:
        for contender in contenders:
            contender.close()
        namespace.stop()
        shutil.rmtree(work, ignore_errors=True)
        venv.close()
        parents.restore()
    rows = {name: {"p50_ms": round(statistics.median(v), 2), "p95_ms": round(sorted(v)[int(len(v) * 0.95) - 1], 2),
                   "n": len(v)} for name, v in samples.items()}
    print(f"OCI `run` of /bin/true in busybox, whole processes, {args.rounds} rounds x {args.runs} runs, shuffled")
    print(f"  {'contender':48} {'p50 ms':>8} {'p95 ms':>8}")
    for name, row in rows.items():
        print(f"  {name:48} {row['p50_ms']:8.2f} {row['p95_ms']:8.2f}")
    for name, why in unavailable.items():
        print(f"  {name:48} unavailable: {why}")
    ratios = {}
    ours = [n for n in rows if n.startswith(f"{SCRIPT} run")]
    for mine in ours:
        for other in ("runc run", "crun run"):
            if other in rows:
                ratios[f"{mine} / {other}"] = round(rows[mine]["p50_ms"] / rows[other]["p50_ms"], 2)
    interp, imports = rows.get("python -I -c pass"), rows.get(f"{SCRIPT} features")
    if interp and imports:
        ratios["interpreter start-up, ms"] = interp["p50_ms"]
        ratios["the runtime's imports, ms"] = round(imports["p50_ms"] - interp["p50_ms"], 2)
    print("ratios of p50 (and where a Python runtime's time goes):")
    for label, value in ratios.items():
        print(f"  {label:66} {value:8.2f}{'x' if '/' in label else ''}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "ratios": ratios, "unavailable": unavailable}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
