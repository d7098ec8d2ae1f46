"""Start-to-exit latency of /bin/true in busybox: the Engine against crun, runc, bwrap, unshare and the floor.

    python benchmarks/startup.py [--runs 200] [--json PATH] [--quick]

Every contender starts /bin/true on the same busybox rootfs (the Engine's
image, <data>/images/busybox/rootfs) and is timed from this process until the
command has exited: the Engine through `engine.run(spec).wait()` (one Engine,
one shim, started before timing), the external tools as a user runs them
(fork+exec of the tool included), and the floor in-process: fork, unshare the
six namespaces, fork PID 1, chroot, exec.  Contenders take turns within each
iteration, in a shuffled order, so machine noise hits all of them alike.

The startup section also times the command-line face as a user runs it, whole
process (interpreter start-up, imports, the run, exit): `containerlab-magic run
busybox /bin/true`, installed in a fresh virtual environment as pip installs it
(see Venv), against `crun run`'s whole process in the same run; beside it the
console script of this Python's own site-packages, and `python -c pass` in both.

Sections: startup (issue 2), cgroup setup/teardown and one stats read per
container (issue 3), --net bridge against none and against the same wiring
done with ip(8) (issue 5), a profile of where one Engine run spends its time,
and the Engine again while this process holds 1 GiB of touched memory.
Targets are printed as ratios, never asserted: the exit status is 0 unless
the benchmark itself is broken.  A tool that is missing or fails is shown as
"unavailable" with the reason.

Needs root.  Touches only what it creates: a private state root, a temp dir
with the OCI bundles and runc/crun state, cgroups under /containerlab/bench-*,
one netns and veth pair per ip(8) run; all removed at the end (see _tools.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (ROOT, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

import _profile
import _tools
from _tools import Contender, Unavailable

from containerlab_magic.runtime.engine import Engine
from containerlab_magic.runtime.errors import ContainerError
from containerlab_magic.runtime.images import ImageStore
from containerlab_magic.runtime.paths import state_root
from containerlab_magic.runtime.spec import ContainerSpec, Limits

TRUE = ["/bin/true"]
WARMUP = 3


class EngineRun(Contender):
    def __init__(self, name: str, engine: Engine, network: str = "none", seccomp: str | None = None):
        self.name, self.engine = name, engine
        self.spec = ContainerSpec(TRUE, image="busybox", network=network, seccomp=seccomp)

    def prepare(self) -> None:
        self.engine.start()
        self.once()

    def once(self) -> None:
        try:
            result = self.engine.run(self.spec).wait()
        except ContainerError as e:  # a run the engine refused or lost: counted as a failed run
            raise Unavailable(f"{type(e).__name__}: {e}") from None
        if result.exit_code != 0:
            raise Unavailable(result.describe())


# The console script, and the module `python -m` runs when it is not installed (the
# script is being renamed from `containerlab`; the module keeps working either way).
CLI_SCRIPT = "containerlab-magic"
CLI_MODULE = "containerlab_magic.cli"


def cli_argv() -> list[str]:
    """How a user starts the CLI with this Python: its console script, else `python -m`."""
    script = os.path.join(os.path.dirname(sys.executable), CLI_SCRIPT)
    return [script] if os.access(script, os.X_OK) else [sys.executable, "-m", CLI_MODULE]


class Venv:
    """A virtual environment with this checkout installed as pip installs it editable
    (a .pth path entry and the console script pyproject.toml names), and nothing else:
    the CLI as a user runs it after `pip install` into a venv, without the site hooks
    (.pth files) that this Python's own site-packages may carry on a given machine."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="containerlab-bench-venv-")
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", self.dir], check=True)
        self.python = os.path.join(self.dir, "bin", "python")
        site = subprocess.run([self.python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                              check=True, capture_output=True, text=True).stdout.strip()
        with open(os.path.join(site, "containerlab_magic.pth"), "w") as f:
            f.write(ROOT + "\n")
        module, function = _entry_point(CLI_SCRIPT)
        self.script = os.path.join(self.dir, "bin", CLI_SCRIPT)
        with open(self.script, "w") as f:  # what pip's script maker writes
            f.write(f"#!{self.python}\nimport sys\nfrom {module} import {function}\nsys.exit({function}())\n")
        os.chmod(self.script, 0o755)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _entry_point(script: str) -> tuple[str, str]:
    """pyproject.toml's [project.scripts] entry of `script`: (module, function)."""
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        for line in f.read().split("[project.scripts]", 1)[1].splitlines():
            name, _, target = line.partition("=")
            if name.strip() == script:
                module, _, function = target.strip().strip('"').partition(":")
                return module, function
    raise SystemExit(f"pyproject.toml names no script {script}")


class CliRun(Contender):
    """`containerlab-magic run busybox /bin/true` as a whole process, as a user types it.

    It runs this checkout's code (PYTHONPATH) against the benchmark's state and data
    roots, so it shares the busybox image and leaves nothing outside them.  As an
    installed package has (pip compiles it), its bytecode is cached: in a directory of
    its own (PYTHONPYCACHEPREFIX), even where PYTHONDONTWRITEBYTECODE is set, which
    would compile every module on every call.  The first call (prepare) compiles.
    """

    def __init__(self, name: str, state_dir: str, data_dir: str, argv: list[str] | None = None):
        self.name, self.state_dir, self.data_dir = name, state_dir, data_dir
        self.argv = (argv or cli_argv()) + ["run", "busybox", *TRUE]
        self.pycache = tempfile.mkdtemp(prefix="containerlab-bench-pyc-")
        path = os.environ.get("PYTHONPATH")
        self.env = dict(os.environ, CONTAINERLAB_STATE=state_dir, CONTAINERLAB_DATA=data_dir,
                        PYTHONPATH=ROOT + (os.pathsep + path if path else ""), PYTHONPYCACHEPREFIX=self.pycache)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)

    def prepare(self) -> None:
        self.once()

    def once(self) -> None:
        try:
            proc = subprocess.run(self.argv, check=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, env=self.env, cwd="/", timeout=60)
        except subprocess.TimeoutExpired:
            raise Unavailable(f"{' '.join(self.argv[-4:])} hung for 60 s") from None
        if proc.returncode != 0:
            last = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["(no message)"]
            raise Unavailable(f"{os.path.basename(self.argv[0])} ... exited {proc.returncode}: {last[0]}")

    def close(self) -> None:
        """End the daemon shim the runs started: it would wait for the next command (60 s),
        its spare warm, while the benchmark removes the state root under it."""
        import select
        import signal
        import socket

        from containerlab_magic.runtime.shim.client import ShimClient

        shutil.rmtree(self.pycache, ignore_errors=True)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            probe.connect(os.path.join(self.state_dir, "shim.sock"))
        except OSError:
            return  # none listens
        finally:
            probe.close()
        client = ShimClient(self.state_dir, self.data_dir, daemon=True, prewarm=False)
        try:
            client.start()
            pidfd = os.pidfd_open(client.shim_pid)
        finally:
            client.close()
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGTERM)  # it drops its spares on the way out
            if not select.select([pidfd], [], [], 10)[0]:
                print(f"  (the CLI's daemon shim {client.shim_pid} did not end within 10 s)")
        finally:
            os.close(pidfd)


# ---------------------------------------------------------------- measuring


def p50(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    """Nearest rank: the smallest value with at least 95% of the samples at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def round_robin(contenders: list[Contender], runs: int, rng: random.Random) -> tuple[dict, dict]:
    """Prepare each, then `runs` iterations in which every ready contender runs once (shuffled order).

    A contender that cannot be prepared, or fails more than MAX_FAILURES of its
    runs, is unavailable; rarer failures (a container killed from outside) are
    counted and reported with the row.  Returns (samples in seconds by name,
    reason by name for the unavailable); failures go to FAILURES.
    """
    samples: dict[str, list[float]] = {c.name: [] for c in contenders}
    unavailable: dict[str, str] = {}
    ready = []
    for c in contenders:
        try:
            c.prepare()
            for _ in range(WARMUP - 1):
                c.once()
            ready.append(c)
        except Unavailable as e:
            unavailable[c.name] = str(e)
    for i in range(runs):
        order = list(ready)
        rng.shuffle(order)
        for c in order:
            t0 = time.perf_counter()
            try:
                c.once()
            except Unavailable as e:
                failed = FAILURES.setdefault(c.name, [])
                failed.append(f"run {i + 1}: {e}")
                if len(failed) > max(1, MAX_FAILURES * runs):
                    unavailable[c.name] = f"{len(failed)} runs failed, first {failed[0]}"
                    ready.remove(c)
                continue
            samples[c.name].append(time.perf_counter() - t0)
    return samples, unavailable


FAILURES: dict[str, list[str]] = {}
MAX_FAILURES = 0.05


def summarise(samples: list[float]) -> dict:
    return {"p50_ms": round(p50(samples) * 1e3, 3), "p95_ms": round(p95(samples) * 1e3, 3), "n": len(samples)}


def rows_for(samples: dict, unavailable: dict, reference: str | None) -> dict:
    """name -> {p50_ms, p95_ms, n, ratio} or {unavailable: reason}."""
    rows: dict[str, dict] = {}
    ref = p50(samples[reference]) if reference and samples.get(reference) else None
    for name, values in samples.items():
        if name in unavailable or not values:
            rows[name] = {"unavailable": unavailable.get(name, "no samples")}
            continue
        rows[name] = summarise(values)
        if FAILURES.get(name):
            rows[name]["failures"] = FAILURES[name]
        if ref:
            rows[name]["ratio"] = round(p50(values) / ref, 3)
    return rows


# ---------------------------------------------------------------- printing


def print_table(title: str, rows: dict, ratio_label: str | None) -> None:
    if title:
        print(f"\n{title}")
    width = max(34, max(len(n) for n in rows) + 2)
    head = f"  {'tool':<{width}}{'p50 ms':>9}{'p95 ms':>9}"
    if ratio_label:
        head += f"  {ratio_label}"
    print(head)
    for name, row in rows.items():
        if "unavailable" in row:
            print(f"  {name:<{width}}unavailable: {row['unavailable']}")
            continue
        line = f"  {name:<{width}}{row['p50_ms']:>9.2f}{row['p95_ms']:>9.2f}"
        if ratio_label and "ratio" in row:
            line += f"  {row['ratio']:>6.2f}x"
        if row.get("failures"):
            line += f"  ({len(row['failures'])} failed runs left out; first {row['failures'][0]})"
        print(line)


def target(label: str, value: float | None, limit: float) -> dict:
    if value is None:
        print(f"  {label:<46} n/a (a contender is unavailable)")
        return {"label": label, "value": None, "limit": limit, "met": None}
    met = value <= limit
    print(f"  {label:<46} {value:6.2f}x  target <= {limit}x  {'met' if met else 'MISSED'}")
    return {"label": label, "value": round(value, 3), "limit": limit, "met": met}


def ratio(rows: dict, a: str, b: str, b_minus: str | None = None) -> float | None:
    if "p50_ms" not in rows.get(a, {}) or "p50_ms" not in rows.get(b, {}):
        return None
    denominator = rows[b]["p50_ms"]
    if b_minus is not None:
        if "p50_ms" not in rows.get(b_minus, {}):
            return None
        denominator -= rows[b_minus]["p50_ms"]
    return rows[a]["p50_ms"] / denominator if denominator > 0 else None


# ---------------------------------------------------------------- sections


def section_startup(engine: Engine, rootfs: str, work: str, runs: int, rng: random.Random, out: dict) -> list:
    namespace = _tools.MountNamespace()
    # The engine keeps its next container's PID 1 ready when it is quiet (prewarm); the
    # other tools' runs in between give it that quiet.  The cold row turns prewarm off,
    # so every run pays clone, namespaces and rootfs on the clock.
    cold = Engine(state_dir=engine.state_root, prewarm=False)
    venv = Venv()
    contenders: list[Contender] = [EngineRun(ENGINE, engine), EngineRun(ENGINE_COLD, cold),
                                   EngineRun(ENGINE_COLD_UNCONFINED, cold, seccomp="unconfined"),
                                   CliRun(CLI, engine.state_root, engine.data_root, [venv.script]),
                                   CliRun(CLI_HERE, engine.state_root, engine.data_root),
                                   _tools.Command(PY_VENV, [venv.python, "-c", "pass"]),
                                   _tools.Command(PY_HERE, [sys.executable, "-c", "pass"])]
    crun_reason = None
    try:
        namespace.start()
    except Unavailable as e:
        crun_reason = str(e)
    if crun_reason is None:
        crun = _tools.OCIRuntime("crun", rootfs, work, via_nsenter=namespace)
        crun.name = CRUN
        contenders += [crun, _tools.Command(NSENTER, namespace.enter() + TRUE)]
    contenders += [_tools.OCIRuntime("runc", rootfs, work), _tools.bwrap(rootfs), _tools.unshare_chroot(rootfs),
                   _tools.Floor(rootfs)]
    try:
        samples, unavailable = round_robin(contenders, runs, rng)
        if crun_reason is not None:
            samples[CRUN], unavailable[CRUN] = [], crun_reason
        out["crun_namespace"] = namespace.verify() if namespace.proc is not None else crun_reason
    finally:
        for c in contenders:
            c.close()
        namespace.stop()
        cold.close()
        venv.close()
    rows = rows_for(samples, unavailable, ENGINE)
    out["startup"] = rows
    print_table(f"startup: /bin/true in busybox, start to exit, {runs} runs each, interleaved", rows, "p50 / engine")
    print(f"  (crun runs in a private mount namespace without {_tools.UNIFIED}, entered with nsenter; "
          f"the nsenter row is that wrapper alone. Namespace check: {out['crun_namespace']})")
    print("\ntargets (ratios of p50):")
    targets = [
        target("engine / crun", ratio(rows, ENGINE, CRUN), 0.5),
        target("engine / (crun - nsenter wrapper)", ratio(rows, ENGINE, CRUN, NSENTER), 0.5),
        target("engine / floor", ratio(rows, ENGINE, FLOOR), 1.5),
        target("engine cold / crun", ratio(rows, ENGINE_COLD, CRUN), 0.5),
        target("engine cold / floor", ratio(rows, ENGINE_COLD, FLOOR), 1.5),
        target("cli / crun (whole processes)", ratio(rows, CLI, CRUN), 4.0),
    ]
    if "p50_ms" in rows.get(CLI, {}):
        print(f"  (cli: {CLI_SCRIPT} run busybox true from a fresh venv with this checkout installed (editable), "
              f"bytecode cached, its daemon shim running between calls, as for an interactive user (it lingers "
              f"60 s); crun's row is its whole process too, plus nsenter's {rows.get(NSENTER, {}).get('p50_ms', '?')} "
              f"ms. The same script from {sys.executable}'s own site-packages: "
              f"{rows.get(CLI_HERE, {}).get('p50_ms', '?')} ms, where `python -c pass` alone takes "
              f"{rows.get(PY_HERE, {}).get('p50_ms', '?')} ms against {rows.get(PY_VENV, {}).get('p50_ms', '?')} "
              f"ms in the venv: the difference is that site-packages' .pth hooks)")
    targets.append(explain_adds_up(engine, min(runs, 50), out))
    cost = _seccomp_cost_ms(rows)
    out["seccomp_cost_ms"] = cost
    print(f"  default seccomp profile: {cost} ms a start (cold p50 with it minus without it; goal < 0.5)")
    out["targets"] = targets
    return targets


def explain_adds_up(warm: Engine, runs: int, out: dict) -> dict:
    """`--explain` is true to the time spent: its per-step timings (overlap counted once,
    plan.record.accounted_us) add up to within 10% of the start latency measured here,
    from the run() call to PID 1's execve (p50 of both, warm and cold runs)."""
    from containerlab_magic.runtime.plan.record import accounted_us

    measured, accounted = [], []
    with Engine(state_dir=warm.state_root, prewarm=False) as cold:
        for engine in (warm, cold):
            for _ in range(runs):
                t0 = time.perf_counter_ns()
                box = engine.run(ContainerSpec(TRUE, image="busybox"), explain=True)
                records = box.explain()
                measured.append((box._plan_started_ns + box.explain_total_us * 1000 - t0) / 1000)
                accounted.append(accounted_us(records))
                box.wait()
    value = p50(accounted) / p50(measured)
    met = 0.9 <= value <= 1.1
    print(f"  {'explain steps / start latency (to exec)':<46} {value:6.2f}x  target 0.9x-1.1x  "
          f"{'met' if met else 'MISSED'}")
    out["explain"] = {"measured_p50_us": p50(measured), "accounted_p50_us": p50(accounted)}
    return {"label": "explain steps / start latency", "value": round(value, 3), "limit": 1.1, "met": met}


def _seccomp_cost_ms(rows: dict) -> float | None:
    with_it, without = rows.get(ENGINE_COLD, {}), rows.get(ENGINE_COLD_UNCONFINED, {})
    if "p50_ms" not in with_it or "p50_ms" not in without:
        return None
    return round(with_it["p50_ms"] - without["p50_ms"], 3)


def section_cgroups(runs: int, out: dict) -> None:
    from containerlab_magic.runtime.cgroups import open_manager

    print(f"\ncgroups: per-container cost, {runs} runs")
    mgr = open_manager()
    if mgr is None:
        print("  skipped: no writable cgroup hierarchy (see `containerlab-magic doctor`)")
        out["cgroups"] = {"skipped": "no writable cgroup hierarchy"}
        return
    create_remove, stats = [], []
    for i in range(runs + WARMUP):
        name = f"startup-bench-{os.getpid()}-{i}"
        t0 = time.perf_counter()
        group = mgr.create(name, Limits())
        group.remove()
        t1 = time.perf_counter()
        group = mgr.create(name, Limits())
        try:
            t2 = time.perf_counter()
            group.stats()
            t3 = time.perf_counter()
        finally:
            group.remove()
        if i >= WARMUP:
            create_remove.append(t1 - t0)
            stats.append(t3 - t2)
    rows = {f"create(id, Limits()) + remove() (v{mgr.version})": summarise(create_remove),
            f"stats() read (v{mgr.version})": summarise(stats)}
    print_table("", rows, None)
    import cgroup_ops  # the colleague's figures with typical limits (64M, 0.5 CPU, 64 pids)

    typical = cgroup_ops.measure(runs)
    if "error" not in typical:
        print(f"  with limits 64M/0.5 CPU/64 pids (benchmarks/cgroup_ops.py, medians): "
              f"create {typical['create_with_limits_ms']:.2f} ms, remove {typical['remove_ms']:.2f} ms, "
              f"stats {typical['stats_read_ms']:.2f} ms")
    out["cgroups"] = {"version": mgr.version, "rows": rows, "cgroup_ops": typical}


def section_bridge(engine: Engine, runs: int, rng: random.Random, out: dict) -> None:
    print(f"\nnetwork: --net bridge against none, {runs} runs each, interleaved")
    try:
        EngineRun("probe", engine, network="bridge").once()
    except Exception as e:  # noqa: BLE001 - whatever it is, the section says so and moves on
        print(f"  skipped: bridge networking not wired ({type(e).__name__}: {e})")
        out["bridge"] = {"skipped": f"bridge networking not wired: {e}"}
        return
    import ipaddress

    from containerlab_magic.runtime.network import NetworkManager

    manager = NetworkManager(engine.state_root)
    try:
        record = manager.inspect("bridge")
    finally:
        manager.close()
    subnet = ipaddress.ip_network(record["subnet"])
    address = f"{list(subnet.hosts())[-1]}/{subnet.prefixlen}"  # the engine hands out from the bottom
    ip = _tools.IpBridge(record["bridge"], address, record["gateway"])
    # Both kinds are kept warm (the engine's last two kinds of container); the cold
    # rows, from an engine with prewarm off, pay clone, rootfs and veth on the clock.
    cold = Engine(state_dir=engine.state_root, prewarm=False)
    contenders = [EngineRun(NET_NONE, engine), EngineRun(NET_BRIDGE, engine, network="bridge"),
                  EngineRun(NET_NONE_COLD, cold), EngineRun(NET_BRIDGE_COLD, cold, network="bridge"), ip]
    try:
        samples, unavailable = round_robin(contenders, runs, rng)
    finally:
        ip.close()
        cold.close()
    rows = rows_for(samples, unavailable, NET_NONE)
    if ip.setup_teardown and IP_ROW not in unavailable:
        rows["ip: setup + teardown only (no exec)"] = summarise(ip.setup_teardown[-len(samples[IP_ROW]):])
    print_table("", rows, "p50 / none")
    result: dict = {"rows": rows, "bridge": record["bridge"], "subnet": record["subnet"]}
    if "p50_ms" in rows[NET_NONE] and "p50_ms" in rows[NET_BRIDGE]:
        added = rows[NET_BRIDGE]["p50_ms"] - rows[NET_NONE]["p50_ms"]
        met = added <= 8.0
        print(f"  bridge adds {added:.2f} ms at p50 over none: target <= 8 ms  {'met' if met else 'MISSED'}")
        result["bridge_added_p50_ms"] = round(added, 3)
        result["target_met"] = met
    if "p50_ms" in rows[NET_NONE_COLD] and "p50_ms" in rows[NET_BRIDGE_COLD]:
        added = rows[NET_BRIDGE_COLD]["p50_ms"] - rows[NET_NONE_COLD]["p50_ms"]
        print(f"  cold (prewarm off), bridge adds {added:.2f} ms at p50 over none")
        result["cold_bridge_added_p50_ms"] = round(added, 3)
    out["bridge"] = result


def section_profile(state_dir: str, work: str, runs: int, out: dict) -> None:
    marks = os.path.join(work, "marks")
    print(f"\nprofile: where one Engine run goes (medians of {runs} profiled runs; "
          "each mark costs a few microseconds)")
    engine = _profile.ProfiledEngine(marks, state_dir=state_dir)
    spec = ContainerSpec(TRUE, image="busybox")
    try:
        engine.start()
        for _ in range(WARMUP):
            engine.run(spec).wait()
        os.truncate(marks, 0)
        for _ in range(runs):
            _profile.profiled_run(engine, spec)
    finally:
        engine.close()
    rows, segments = _profile.analyse(marks)
    try:
        with open(marks + ".skipped") as f:
            skipped = f.read().split()
    except FileNotFoundError:
        skipped = []
    if skipped:
        print(f"  (not in this tree, so not instrumented: {', '.join(skipped)})")
    print("  critical path (median of each segment; PID 1's work overlaps the reply to the engine):")
    for seg in segments:
        print(f"  {seg['ms']:10.3f} ms  {seg['segment']}")
    print(f"\n  {'starts at ms':>12}{'takes ms':>10}  phase")
    for row in rows:
        took = f"{row['duration_ms']:10.3f}" if row["duration_ms"] is not None else f"{'':10}"
        print(f"  {row['start_ms']:12.3f}{took}  {row['phase']}")
    out["profile"] = {"segments": segments, "phases": rows, "not_instrumented": skipped}


def section_memory(engine: Engine, rootfs: str, state_dir: str, hold_mib: int, runs: int,
                   rng: random.Random, out: dict) -> None:
    """The Engine with and without this process holding `hold_mib` MiB, in alternating blocks.

    Blocks of 25 iterations alternate: hold the memory (bytearray, every page
    written), then free it.  In every block the first engine (started before
    any of it) and a second engine (started while the memory was held, as in a
    kernel that is already big) run interleaved, so both conditions see the
    same neighbours.  The floor holding the memory is measured last, on its
    own: forking a big process is what the shim exists to avoid.
    """
    print(f"\nmemory: the engine while this process holds {hold_mib} MiB (bytearray, every page written) "
          f"and while it does not, alternating blocks of 25, {runs} runs each")
    block = 25
    held: dict[str, list[float]] = {MEM_SAME: [], MEM_NEW: []}
    free: dict[str, list[float]] = {MEM_SAME: [], MEM_NEW: []}
    unavailable: dict[str, str] = {}
    rss_kib = 0
    late: Engine | None = None
    try:
        done = 0
        while done < runs:
            n = min(block, runs - done)
            ballast, rss_kib = _hold(hold_mib)
            if late is None:
                late = Engine(state_dir=state_dir)
            contenders = [EngineRun(MEM_SAME, engine), EngineRun(MEM_NEW, late)]
            samples, failed = round_robin(contenders, n, rng)
            for name in samples:
                held[name] += samples[name]
            del ballast
            samples, failed2 = round_robin(contenders, n, rng)
            for name in samples:
                free[name] += samples[name]
            unavailable.update(failed)
            unavailable.update(failed2)
            if unavailable:
                break
            done += n
        floor_runs = min(runs, 50)
        ballast, _ = _hold(hold_mib)
        floor = _tools.Floor(rootfs)
        floor.name = MEM_FLOOR
        floor_samples, floor_failed = round_robin([floor], floor_runs, rng)
        del ballast
        unavailable.update(floor_failed)
    finally:
        if late is not None:
            late.close()
    print(f"  VmRSS of this process while holding it: {rss_kib >> 10} MiB")
    rows: dict[str, dict] = {}
    for name in (MEM_SAME, MEM_NEW):
        base = p50(free[MEM_SAME]) if free[MEM_SAME] else None
        for label, values in ((f"{name}, memory held", held[name]), (f"{name}, memory freed", free[name])):
            if name in unavailable or not values:
                rows[label] = {"unavailable": unavailable.get(name, "no samples")}
                continue
            rows[label] = summarise(values)
            if base:
                rows[label]["ratio"] = round(p50(values) / base, 3)
    floor_base = out.get("startup", {}).get(FLOOR, {}).get("p50_ms")
    if floor_samples.get(MEM_FLOOR):
        rows[MEM_FLOOR] = summarise(floor_samples[MEM_FLOOR])
        if floor_base:
            rows[MEM_FLOOR]["ratio"] = round(rows[MEM_FLOOR]["p50_ms"] / floor_base, 3)
    else:
        rows[MEM_FLOOR] = {"unavailable": unavailable.get(MEM_FLOOR, "no samples")}
    print_table("", rows, "p50 / first engine with memory freed (floor: / floor in startup)")
    print("  target: the same p50 with the memory held (about 1.0x; read as met within 10%)")
    for name in (MEM_SAME, MEM_NEW):
        value = rows.get(f"{name}, memory held", {}).get("ratio")
        out.setdefault("targets", []).append(target(f"{name}, held / engine, freed", value, 1.1))
    first = out.get("startup", {}).get(ENGINE, {}).get("p50_ms")
    held_p50 = rows.get(f"{MEM_SAME}, memory held", {}).get("p50_ms")
    if first and held_p50:
        print(f"  (against the engine row of the startup table: {held_p50 / first:.2f}x)")
    out["memory"] = {"hold_mib": hold_mib, "vmrss_kib": rss_kib, "rows": rows}


def _hold(mib: int) -> tuple[bytearray, int]:
    """A bytearray of `mib` MiB with every page written, and this process's VmRSS in KiB."""
    ballast = bytearray(mib << 20)
    ballast[::4096] = b"\x01" * len(range(0, len(ballast), 4096))
    with open("/proc/self/status") as f:
        rss = int(next(line.split()[1] for line in f if line.startswith("VmRSS:")))
    return ballast, rss


SECTIONS = ("startup", "cgroups", "bridge", "profile", "memory")
ENGINE = "engine: run().wait()"
ENGINE_COLD = "engine, prewarm off (cold)"
CLI = "cli: containerlab-magic run (whole process)"
CLI_HERE = "  the same, this Python's site-packages"
PY_VENV = "  python -c pass (the venv)"
PY_HERE = "  python -c pass (this Python)"
ENGINE_COLD_UNCONFINED = "engine, prewarm off, seccomp=unconfined"
CRUN = "crun run (via nsenter)"
NSENTER = "nsenter alone (crun's wrapper)"
FLOOR = "floor: fork+unshare+exec"
NET_NONE = "engine --net none"
NET_BRIDGE = "engine --net bridge"
NET_NONE_COLD = "engine --net none, prewarm off"
NET_BRIDGE_COLD = "engine --net bridge, prewarm off"
IP_ROW = _tools.IpBridge.name
MEM_SAME = "engine"
MEM_NEW = "engine started while holding"
MEM_FLOOR = "floor, memory held"


def environment() -> dict:
    def first_line(argv: list[str]) -> str:
        try:
            text = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10).stdout
            return text.strip().splitlines()[0] if text.strip() else "?"
        except (OSError, subprocess.TimeoutExpired):
            return "not installed"

    def git(*argv: str) -> str:
        try:
            return subprocess.run(["git", "-C", ROOT, *argv], check=False, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    changed = git("status", "--porcelain", "--", "containerlab_magic/runtime").splitlines()
    tree = git("rev-parse", "--short", "HEAD") + (
        f" + uncommitted changes in {', '.join(os.path.basename(c.split()[-1]) for c in changed)}" if changed else "")
    return {"runtime_tree": tree, "kernel": platform.release(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "crun": first_line(["crun", "--version"]), "runc": first_line(["runc", "--version"]),
            "bwrap": first_line(["bwrap", "--version"]), "unshare": first_line(["unshare", "--version"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="measured runs per contender (default 200)")
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: hold 64 MiB instead of 1 GiB, profile --runs runs")
    parser.add_argument("--hold-mib", type=int, help="memory to hold in the last section (default 1024)")
    parser.add_argument("--profile-runs", type=int, help="profiled Engine runs (default 50)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the per-iteration shuffle")
    parser.add_argument("--only", action="append", choices=SECTIONS, metavar="SECTION",
                        help=f"run only this section (repeatable): {', '.join(SECTIONS)}")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if os.geteuid() != 0:
        print("startup.py needs root (namespaces, mounts, cgroups, netns)", file=sys.stderr)
        return 2
    hold_mib = args.hold_mib or (64 if args.quick else 1024)
    profile_runs = args.profile_runs or (args.runs if args.quick else 50)
    rng = random.Random(args.seed)
    out: dict = {"runs": args.runs, "environment": environment()}
    started = time.monotonic()

    parent = os.path.dirname(state_root())
    os.makedirs(parent, exist_ok=True)
    state_dir = tempfile.mkdtemp(prefix="containerlab-bench-", dir=parent)
    work = _tools.workdir()
    engine = Engine(state_dir=state_dir)
    out["state_dir"], out["work_dir"] = state_dir, work
    print(f"containerlab startup benchmark: {out['environment']['cpus']} CPUs, kernel {platform.release()}; "
          f"runtime at {out['environment']['runtime_tree']}\nstate {state_dir}, data {engine.data_root}")
    rootfs = ImageStore(engine.data_root).resolve("busybox").layers[0]
    print(f"busybox rootfs shared by every contender: {rootfs}")
    snapshot = _tools.rootfs_snapshot(rootfs)
    from containerlab_magic.runtime.cgroups import open_manager

    mgr = open_manager()
    lab_hierarchies = set()
    if mgr is not None:
        for path in mgr.describe().get("roots", []):
            lab_hierarchies.add(os.path.realpath(os.path.dirname(path)))
    parents = _tools.CgroupParents(keep=lab_hierarchies)
    try:
        sections = [
            ("startup", lambda: section_startup(engine, rootfs, work, args.runs, rng, out)),
            ("cgroups", lambda: section_cgroups(args.runs, out)),
            ("bridge", lambda: section_bridge(engine, args.runs, rng, out)),
            ("profile", lambda: section_profile(state_dir, work, profile_runs, out)),
            ("memory", lambda: section_memory(engine, rootfs, state_dir, hold_mib, args.runs, rng, out)),
        ]
        for name, section in sections:
            if args.only and name not in args.only:
                continue
            try:
                section()
            except Exception as e:  # noqa: BLE001 - report the broken section, run the others
                print(f"\n{name}: section failed: {type(e).__name__}: {e}")
                out.setdefault("failed_sections", {})[name] = f"{type(e).__name__}: {e}"
    finally:
        engine.close()
        cleanup = _cleanup(state_dir, work, parents)
    unchanged = _tools.rootfs_snapshot(rootfs) == snapshot
    out["rootfs_unchanged"] = unchanged
    out["cleanup"] = cleanup
    out["seconds"] = round(time.monotonic() - started, 1)
    print(f"\nshared rootfs unchanged: {'yes' if unchanged else 'NO'}; cleanup: {'; '.join(cleanup) or 'nothing left'}; "
          f"took {out['seconds']} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


def _cleanup(state_dir: str, work: str, parents: _tools.CgroupParents) -> list[str]:
    notes = []
    if os.path.isdir(os.path.join(state_dir, "networks")):
        from containerlab_magic.runtime.network import NetworkManager

        manager = NetworkManager(state_dir)
        try:
            if any(n["name"] == "bridge" for n in manager.list()):
                manager.remove("bridge")
                notes.append("removed the benchmark's bridge network")
        except Exception as e:  # noqa: BLE001
            notes.append(f"could not remove the bridge network: {e}")
        finally:
            manager.close()
    for path in parents.restore():
        notes.append(f"removed {path} (made by runc/crun)")
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(state_dir, ignore_errors=True)
    return notes


if __name__ == "__main__":
    sys.exit(main())
