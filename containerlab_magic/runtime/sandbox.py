"""The process-sandbox rung: where no namespace can be made, a plain process of the user's.

Some pods forbid unshare(2) and clone(2)'s namespace flags altogether (containerd's
default seccomp profile without CAP_SYS_ADMIN; ../shared/notes/rootless-and-pods.md).
There the lab cannot make a container, and says so on every run; what it still
gives is a sandboxed process:

- its own session (setsid(2)), which it cannot leave: the seccomp filter refuses
  setsid, so every process it starts stays in the session, and ending the
  "container" ends the session (kill_session: each process whose session id is
  PID 1's), as a PID namespace would;
- a private temporary directory (0700, in its state directory) as TMPDIR and
  working directory, removed with it;
- rlimits for --memory and --pids-limit (rootless.rlimits_for), no_new_privs and
  the default seccomp profile, less setsid and the calls that reach into another
  process of the same user (ptrace, process_vm_readv/writev, pidfd_getfd, kcmp):
  without a PID namespace the user's Jupyter kernel is in reach;
- the image's programs first on PATH: the host's files are its files (the
  `host` image is the natural one; busybox works, being one static binary); an
  image of other dynamically linked programs cannot run without a mount namespace.

It shares the host's files, processes and network: no `--net none`, no `-v`, no
`--user`, no `--read-only`, no hostname.  `run` refuses those in one line, and
the notice below goes with every run.
"""

from __future__ import annotations

import copy
import os
import signal
from dataclasses import dataclass

NOTICE = ("process-sandbox: this host allows no namespaces, so the command runs as a plain process of yours "
          "(own session, private TMPDIR, rlimits, seccomp); it shares the host's files, processes and network "
          "(see `containerlab-magic doctor`)")
BLOCKED = ("setsid", "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp")
IMAGES = ("host", "busybox")  # what can run without a root of its own


@dataclass(frozen=True)
class Sandbox:
    uid: int
    gid: int

    @staticmethod
    def clone_flags(own_net: bool = True) -> int:
        return 0  # a plain child: no namespace of any kind

    @staticmethod
    def describe() -> str:
        return "no namespaces (process-sandbox): own session, private TMPDIR, rlimits, seccomp"


def for_this_process() -> Sandbox | None:
    """A Sandbox where the probes found no namespace but a sandbox works (not as root)."""
    if os.geteuid() == 0:
        return None
    from . import rungs

    return Sandbox(os.geteuid(), os.getegid()) if rungs.probe().rung == "process-sandbox" else None


def refusal(spec, image_name: str) -> str | None:
    """What of `spec` a process sandbox cannot honour, in one line (None: it can run)."""
    fix = "this host allows no namespaces (process-sandbox rung, see `containerlab-magic doctor`)"
    if image_name not in IMAGES:
        return (f"image {image_name} needs a root filesystem of its own (a mount namespace), and {fix}: "
                f"use the host or busybox image here")
    for what, bad in (("-v/--volume", bool(spec.mounts)), ("--read-only", spec.read_only),
                      ("--user", spec.user not in (None, "", "0", "root", "0:0")), ("--hostname", bool(spec.hostname)),
                      ("--group-add", bool(spec.group_add)),
                      (f"--net {spec.network}", spec.network not in ("none", "host"))):
        if bad:
            return f"{what} needs a namespace of its own, and {fix}: drop {what.split()[0]}"
    return None


def blocked() -> tuple[str, ...]:
    """BLOCKED, less what a test turned off (security/guards.py)."""
    from .security import guards

    return tuple(name for name in BLOCKED
                 if not guards.disabled("sandbox-session" if name == "setsid" else "sandbox-ptrace"))


def profile_for(profile: dict) -> dict:
    """The profile less the calls a sandboxed process must not make (see the docstring)."""
    profile = copy.deepcopy(profile)
    refused = set(blocked())
    kept = []
    for rule in profile.get("syscalls") or []:
        names = rule.get("names") or ([rule["name"]] if "name" in rule else [])
        if rule.get("action") == "SCMP_ACT_ALLOW" and set(names) & refused:
            rule = dict(rule, names=[n for n in names if n not in refused])
            rule.pop("name", None)
            if not rule["names"]:
                continue
        kept.append(rule)
    if profile.get("defaultAction") == "SCMP_ACT_ALLOW" and refused:
        kept.append({"names": sorted(refused), "action": "SCMP_ACT_ERRNO"})
    profile["syscalls"] = kept
    return profile


def image_path(rootfs: str, env_path: str) -> str:
    """PATH for a sandboxed command: the image's own directories (found in its rootfs) first."""
    if not rootfs:
        return env_path
    dirs = [os.path.join(rootfs, d.lstrip("/")) for d in env_path.split(":") if d.startswith("/")]
    return ":".join([d for d in dirs if os.path.isdir(d)] + env_path.split(":"))


def session_pids(sid: int) -> list[int]:
    """Processes of this session (proc(5): /proc/PID/stat field 6)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2:].split()
        if int(fields[3]) == sid and fields[0] not in (b"Z", b"X"):
            found.append(int(name))
    return found


def kill_session(sid: int, sig: int = signal.SIGKILL) -> int:
    """Signal every process of session `sid` until none is left (a fork during the scan is
    caught by the next); returns how many were signalled."""
    count = 0
    for _ in range(50):
        pids = session_pids(sid)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, sig)
                count += 1
            except ProcessLookupError:
                pass
        if sig != signal.SIGKILL:
            break
    return count


def reap_orphans(tracked) -> int:
    """Reap zombies re-parented to us (the shim is a subreaper) that we do not track: a
    sandboxed process's children outlive it here, where a PID namespace would end them.
    Returns how many untracked children are still alive."""
    me, alive = os.getpid(), 0
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in tracked:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2:].split()
        if int(fields[1]) != me:
            continue
        if fields[0] != b"Z":
            alive += 1
            continue
        try:
            os.waitpid(int(name), os.WNOHANG)
        except ChildProcessError:
            pass
    return alive


def end_session(sid: int, tracked) -> None:
    """A sandboxed container has ended (or is killed): end its session, reap what comes back to us."""
    import time

    kill_session(sid)
    deadline = time.monotonic() + 1.0
    while reap_orphans(tracked) and time.monotonic() < deadline:
        time.sleep(0.005)
