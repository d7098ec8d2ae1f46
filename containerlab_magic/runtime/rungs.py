"""The isolation ladder: which rung this process can use, found by trying.

A container is built from kernel features that an unprivileged user may or may
not have, depending on the host: user namespaces (user_namespaces(7)), the
setuid newuidmap(1) with /etc/subuid (subuid(5)), a fresh /proc in a new PID
namespace (refused under a pod's masked /proc), a seccomp profile that forbids
unshare(2) altogether (containerd's default), cgroups the user may write
(cgroups(7)).  Reading sysctls cannot tell which of these work (a seccomp
filter, an LSM or no_new_privs each decide alone), so each is tried in a
forked child, cheapest first (probes.py), and the richest rung that works is
chosen:

    root                 every namespace, cgroups, bridges, device policy, seccomp
    rootless-multi-id    a user namespace mapped with ranges from /etc/subuid
    rootless-single-id   a user namespace mapping only our uid (to 0 inside)
    process-sandbox      a plain child: own session, rlimits, private tmp, seccomp
    none                 nothing works: the lab cannot start containers

    from containerlab_magic.runtime import rungs
    result = rungs.probe()          # once per process; later calls return the same result
    print(rungs.describe(result))   # the rung, each probe with errno, the fix for what is missing

A multi-threaded caller (a Jupyter kernel) must not fork: there the probes run
in a fresh `python -I` started from /, which prints the result as JSON
(`python -m containerlab_magic.runtime.rungs`).
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

from . import delegation, probes
from .rung_fixes import fix_for

__all__ = ["Host", "Probe", "Result", "describe", "fix_for", "headline", "notice", "probe", "read_host"]

RUNGS = ("root", "rootless-multi-id", "rootless-single-id", "process-sandbox", "none")
ROOTLESS_NEEDS = ("userns", "map-single", "mount", "overlay")  # without these, no rootless container


@dataclass(frozen=True)
class Probe:
    name: str  # "userns", "map-multi", ...
    what: str  # the operation, in the words of its man page
    ok: bool | None  # None: not tried (what it needs failed, or this rung does not need it)
    errno: int | None = None
    detail: str = ""
    fix: str = ""

    @property
    def status(self) -> str:
        return {True: "ok", False: "failed", None: "skipped"}[self.ok]

    @property
    def errno_name(self) -> str:
        return errno.errorcode.get(self.errno, str(self.errno)) if self.errno else ""


@dataclass(frozen=True)
class Host:
    """Facts read, not tried: they explain why a probe failed."""

    uid: int
    user: str
    no_new_privs: bool
    seccomp: int  # /proc/self/status Seccomp: 0 none, 1 strict, 2 filter
    cap_eff: int
    max_user_namespaces: int | None
    apparmor_restricts_userns: bool
    subuid: tuple[int, int] | None  # (start, count) from /etc/subuid
    subgid: tuple[int, int] | None


@dataclass(frozen=True)
class Result:
    rung: str
    host: Host
    probes: tuple[Probe, ...]
    cgroup: delegation.Access
    elapsed_ms: float = 0.0
    how: str = "fork"  # "fork" or "fresh process": how the probes ran

    def probe(self, name: str) -> Probe | None:
        return next((p for p in self.probes if p.name == name), None)

    def has(self, name: str) -> bool:
        found = self.probe(name)
        return bool(found and found.ok)

    @property
    def can_start(self) -> bool:
        return self.rung != "none"

    @property
    def limits(self) -> str:
        """Where resource limits come from on this rung."""
        if self.cgroup.ok and self.cgroup.controllers:
            return f"cgroup v{self.cgroup.version} ({' '.join(self.cgroup.controllers)})"
        return "rlimits only (approximations: RLIMIT_AS, RLIMIT_NPROC, RLIMIT_CPU)"

    @property
    def namespaces(self) -> tuple[str, ...]:
        """The namespaces a container gets on this rung (names as in /proc/PID/ns): what the
        start plan may unshare.  Root needs no user namespace; the process sandbox gets none."""
        if self.rung == "root":
            return ("mnt", "uts", "ipc", "net", "pid", "cgroup")
        if self.rung.startswith("rootless"):
            optional = (("net", "netns"), ("uts", "uts"), ("pid", "pidns"))
            return ("user", "mnt", "ipc", *(ns for ns, probe in optional if self.has(probe)))
        return ()

    def missing(self) -> tuple[Probe, ...]:
        return tuple(p for p in self.probes if p.ok is False)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_dict(cls, data: dict) -> Result:
        host = data["host"]
        for key in ("subuid", "subgid"):
            host[key] = tuple(host[key]) if host[key] else None
        access = data["cgroup"]
        access["dirs"], access["controllers"] = tuple(access["dirs"]), tuple(access["controllers"])
        return cls(data["rung"], Host(**host), tuple(Probe(**p) for p in data["probes"]),
                   delegation.Access(**access), data["elapsed_ms"], data["how"])


# ---- reading the host ---------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _sub_range(path: str, user: str, uid: int) -> tuple[int, int] | None:
    for line in (_read(path) or "").splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (user, str(uid)) and parts[1].isdigit() and parts[2].isdigit():
            return int(parts[1]), min(int(parts[2]), 65536)
    return None


def read_host() -> Host:
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    status = dict(line.split(":", 1) for line in (_read("/proc/self/status") or "").splitlines() if ":" in line)
    max_userns = _read("/proc/sys/user/max_user_namespaces")
    return Host(uid, user, status.get("NoNewPrivs", "0").strip() == "1", int(status.get("Seccomp", "0")),
                int(status.get("CapEff", "0"), 16), int(max_userns) if max_userns else None,
                _read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1",
                _sub_range("/etc/subuid", user, uid), _sub_range("/etc/subgid", user, uid))


# ---- the ladder ---------------------------------------------------------------------------


@dataclass
class _Ladder:
    host: Host
    done: list[Probe] = field(default_factory=list)

    def ok(self, name: str) -> bool:
        return any(p.name == name and p.ok for p in self.done)

    def run(self, name: str, what: str, needs: tuple[str, ...], fn, *args) -> bool:
        lacking = [n for n in needs if not self.ok(n)]
        if lacking:
            self.done.append(Probe(name, what, None, detail=f"not tried: needs {', '.join(lacking)}"))
            return False
        outcome = probes.run_child(fn, *args)
        fix = "" if outcome.ok else fix_for(name, outcome.errno, self.host, outcome.detail)
        self.done.append(Probe(name, what, outcome.ok, outcome.errno, outcome.detail, fix))
        return outcome.ok

    def skip(self, name: str, what: str, why: str) -> None:
        self.done.append(Probe(name, what, None, detail=why))


def _multi_id(ladder: _Ladder) -> None:
    host = ladder.host
    what = "newuidmap/newgidmap: ids from /etc/subuid"
    tools = [shutil.which(t, path=probes.HELPER_PATH) for t in ("newuidmap", "newgidmap")]
    if host.uid == 0:  # root either maps any range itself or, without capabilities, none at all
        return ladder.skip("map-multi", what, "not tried as uid 0")
    if not all(tools):
        reason, err = "newuidmap/newgidmap are not installed", errno.ENOENT
    elif not (host.subuid and host.subgid):
        reason, err = f"no /etc/subuid and /etc/subgid entry for {host.user}", errno.ENOENT
    else:
        return ladder.run("map-multi", what, ("userns",), probes.p_map_multi, *tools, host.subuid, host.subgid)
    ladder.done.append(Probe("map-multi", what, False, err, reason, fix_for("map-multi", err, host, reason)))


def _ladder() -> tuple[list[Probe], str]:
    ladder = _Ladder(read_host())
    root = ladder.host.uid == 0 and os.geteuid() == 0
    if root and ladder.run("root-ns", "unshare mnt/uts/ipc/net/pid/cgroup; mount proc", (), probes.p_root_namespaces):
        # Root of a user namespace (a pod with hostUsers: false) has no trusted.* xattrs.
        ladder.run("overlay", "overlayfs mount (root)", (), probes.p_overlay, False, not probes.initial_userns())
    else:
        ladder.run("userns", "unshare(CLONE_NEWUSER)", (), probes.p_userns)
        ladder.run("map-single", "uid_map/gid_map: own id -> 0", ("userns",), probes.p_map_single)
        _multi_id(ladder)
        ladder.run("mount", "IPC + mount namespaces, tmpfs", ("map-single",), probes.p_mount)
        ladder.run("overlay", "overlayfs mount with userxattr", ("mount",), probes.p_overlay, True, True)
        ladder.run("pidns", "PID namespace + fresh /proc", ("mount",), probes.p_pidns)
        ladder.run("uts", "UTS namespace + sethostname", ("map-single",), probes.p_uts)
        ladder.run("netns", "network namespace + lo up", ("map-single",), probes.p_netns)
    ladder.run("seccomp", "no_new_privs + seccomp filter", (), probes.p_seccomp)
    ladder.run("sandbox", "setsid + setrlimit + private tmp", (), probes.p_sandbox)
    if ladder.ok("root-ns") and ladder.ok("overlay"):
        rung = "root"
    elif all(ladder.ok(n) for n in ROOTLESS_NEEDS):
        rung = "rootless-multi-id" if ladder.ok("map-multi") else "rootless-single-id"
    elif ladder.ok("sandbox"):
        rung = "process-sandbox"
    else:
        rung = "none"
    return ladder.done, rung


def _cgroup_probe(host: Host) -> tuple[delegation.Access, Probe]:
    try:
        access = delegation.probe()
    except OSError as e:
        access = delegation.Access(False, None, errno=e.errno, detail=str(e))
    what = "make a cgroup where the lab would"
    fix = "" if access.ok and access.controllers else fix_for("cgroups", access.errno, host, access.detail, access)
    return access, Probe("cgroups", what, access.ok, access.errno, access.detail, fix)


def _probe_here(how: str = "fork") -> Result:
    started = time.perf_counter()
    found, rung = _ladder()
    host = read_host()
    access, cgroup = _cgroup_probe(host)
    elapsed = (time.perf_counter() - started) * 1000
    return Result(rung, host, tuple(found) + (cgroup,), access, round(elapsed, 1), how)


def _probe_fresh() -> Result:
    """The same probes in a fresh single-threaded interpreter: forking a threaded one can deadlock.

    -I -S: no environment, no site-packages (the probes need only the standard library and
    this package, whose parent directory goes first on sys.path).
    """
    started = time.perf_counter()
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (f"import sys; sys.path.insert(0, {package_parent!r}); "
            "from containerlab_magic.runtime.rungs import main; main(['--json'])")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    try:
        run = subprocess.run([sys.executable, "-I", "-S", "-c", code], cwd="/", env=env, capture_output=True, text=True,
                             timeout=60)
    except OSError as e:  # EAGAIN at the process limit: then nothing else could start either
        host = read_host()
        failed = Probe("sandbox", "start a process", False, e.errno, f"fork: {e.strerror}",
                       fix_for("sandbox", e.errno, host, "fork"))
        return Result("none", host, (failed,), delegation.Access(False, None), 0.0, "fresh process")
    if run.returncode not in (0, 1):
        raise RuntimeError(f"the rung probe failed (exit {run.returncode}): {run.stderr.strip()[-300:]}")
    data = json.loads(run.stdout)
    data["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 1)
    data["how"] = "fresh process"
    return Result.from_dict(data)


def _single_threaded() -> bool:
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


_cached: Result | None = None


def probe(refresh: bool = False) -> Result:
    """This process's rung, probed once (in forked children, or a fresh process when threaded)."""
    global _cached
    if _cached is None or refresh:
        _cached = _probe_here() if _single_threaded() else _probe_fresh()
    return _cached


# What a failed probe takes away, in a user's words (map-multi is in the rung's name).
LOST = {"pidns": "own PID namespace", "uts": "own hostname", "netns": "own network",
        "cgroups": "cgroup limits (rlimits instead)", "seccomp": "seccomp filter"}


def headline(result: Result) -> str:
    """One line: the rung and what it lacks (what %load_ext prints)."""
    if not result.can_start:
        return "isolation rung: none: this host cannot start containers (see doctor for the fixes)"
    lost = [LOST[p.name] for p in result.missing() if p.name in LOST]
    if result.probe("cgroups") and result.probe("cgroups").ok and not result.cgroup.controllers:
        lost.append(LOST["cgroups"])
    text = f"isolation rung: {result.rung}"
    return text + (f" (without: {', '.join(lost)}; see doctor for the fixes)" if lost else "")


def notice() -> str | None:
    """What loading the extension says: nothing as root (the full mode), else the headline,
    so a student in a pod knows at once what the lab can do for them."""
    return None if os.geteuid() == 0 else headline(probe())


def describe(result: Result) -> str:
    """The rung, each probe with ok/failed/skipped and its errno, the fix for each missing piece."""
    h = result.host
    lines = [f"rung: {result.rung}" + ("" if result.can_start else "  (the lab cannot start containers here)"),
             f"as uid {h.uid} ({h.user}); no_new_privs {'on' if h.no_new_privs else 'off'}; "
             f"seccomp {['off', 'strict', 'filter'][h.seccomp] if h.seccomp < 3 else h.seccomp}; "
             f"capabilities {h.cap_eff:#x}",
             f"limits: {result.limits}"]
    for p in result.probes:
        mark = p.status + (f" {p.errno_name}" if p.errno_name else "")
        lines.append(f"  {mark:16} {p.name:11} {p.what}" + (f": {p.detail}" if p.detail else ""))
        if p.fix:
            lines.append(f"  {'':16} {'':11} fix: {p.fix}")
    lines.append(f"probed in {result.elapsed_ms:.0f} ms ({result.how})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m containerlab_magic.runtime.rungs [--text]`: the result as JSON (or text)."""
    args = sys.argv[1:] if argv is None else argv
    result = _probe_here() if _single_threaded() else _probe_fresh()
    print(describe(result) if "--text" in args else result.to_json())
    return 0 if result.can_start else 1


if __name__ == "__main__":
    sys.exit(main())
