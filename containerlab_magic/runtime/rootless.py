"""The rootless rungs' part of a start: a user namespace in which we are root.

An unprivileged user may make a user namespace (user_namespaces(7)) and, in it,
every other kind of namespace the host allows; the probes (rungs.py) found out
which.  PID 1 is cloned with CLONE_NEWUSER and the others in one call, so they
are all owned by the new user namespace, and it maps ids itself before anything
else (single-id: our uid and gid become 0 inside, nothing else is mapped):

    /proc/self/setgroups  deny     (required before an unprivileged gid_map)
    /proc/self/uid_map    0 UID 1
    /proc/self/gid_map    0 GID 1

What this rung changes in the start plan, and why (all measured on this kind of
host: ../shared/notes/rootless-and-pods.md):
- the overlay is mounted with `userxattr`: trusted.* xattrs do not exist in a
  user namespace, and without it opaque directories are silently ignored;
- image layers are unpacked as the user, who then owns them (root inside):
  files of a host-root-owned lower would show as nobody and refuse every write;
- device nodes cannot be made (mknod needs CAP_MKNOD in the initial namespace):
  /dev/null and the rest are bind mounts of the host's nodes, as rootless podman does;
- only uid and gid 0 exist inside: setgroups(2) is denied, `--user 1000` cannot
  be honoured (one line says so);
- no cgroups unless one is delegated (see delegation.py), no bridges (they need
  CAP_NET_ADMIN on the host): `--net none` (the default) gives a network
  namespace with its own loopback, when the host allows one.
"""

from __future__ import annotations

import errno
import os
import resource
from dataclasses import dataclass

from . import linux


@dataclass(frozen=True)
class UserNs:
    """How a non-root user's containers are made here: the ids mapped and the namespaces
    the host lets this user make (the probes' answers)."""

    uid: int
    gid: int
    pid: bool = True  # a PID namespace with its own /proc (not under a masked /proc)
    uts: bool = True  # its own hostname
    net: bool = True  # its own network namespace (lo only)
    # multi-id: (start, count) from /etc/subuid and /etc/subgid, mapped by the setuid helpers
    uid_range: tuple[int, int] | None = None
    gid_range: tuple[int, int] | None = None
    helpers: tuple[str, str] = ("", "")  # newuidmap, newgidmap

    @property
    def multi(self) -> bool:
        return self.uid_range is not None and self.gid_range is not None

    def clone_flags(self, own_net: bool = True) -> int:
        flags = linux.CLONE_NEWUSER | linux.CLONE_NEWNS | linux.CLONE_NEWIPC
        flags |= (linux.CLONE_NEWPID if self.pid else 0) | (linux.CLONE_NEWUTS if self.uts else 0)
        return flags | (linux.CLONE_NEWNET if self.net and own_net else 0)

    def map_from_parent(self, pid: int) -> None:
        """Multi-id: map PID 1's namespace from outside with newuidmap(1)/newgidmap(1):
        0 -> our id, 1..count -> the ranges /etc/subuid and /etc/subgid give us."""
        import subprocess

        from .errors import HostUnsupported

        for tool, own, (start, count) in ((self.helpers[0], self.uid, self.uid_range),
                                          (self.helpers[1], self.gid, self.gid_range)):
            argv = [tool, str(pid), "0", str(own), "1", "1", str(start), str(count)]
            run = subprocess.run(argv, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, cwd="/")
            if run.returncode:
                why = (run.stderr.strip().splitlines() or [f"exit {run.returncode}"])[-1]
                raise HostUnsupported(f"{os.path.basename(tool)} could not map the container's ids ({why}): check "
                                      "the /etc/subuid and /etc/subgid entries (`containerlab-magic doctor`)")

    def map_self(self) -> None:
        """In PID 1, first of all: map our ids (single-id) in the namespace we were cloned into."""
        for name, text in (("setgroups", "deny"), ("uid_map", f"0 {self.uid} 1"), ("gid_map", f"0 {self.gid} 1")):
            fd = os.open(f"/proc/self/{name}", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)

    def check_user(self, uid: int, gid: int, user: str) -> None:
        """Only mapped ids exist inside (only root, single-id): say so instead of setuid's EINVAL."""
        if self.multi:
            if uid <= self.uid_range[1] and gid <= self.gid_range[1]:
                return
            raise OSError(errno.EINVAL, f"user {user!r} (uid {uid}, gid {gid}) is not mapped in this rootless "
                                        f"container: ids 0 to {min(self.uid_range[1], self.gid_range[1])} are "
                                        "(your /etc/subuid and /etc/subgid ranges); choose one of them")
        if (uid, gid) != (0, 0):
            raise OSError(errno.EINVAL, f"user {user!r} (uid {uid}, gid {gid}) does not exist in this rootless "
                                        f"container: only root (your own uid {self.uid}) is mapped; run as root "
                                        "inside (drop --user), or give the host /etc/subuid ranges for a "
                                        "multi-id namespace")

    def describe(self) -> str:
        if self.multi:
            return (f"user namespace: uid {self.uid} and gid {self.gid} are 0 inside, 1..{self.uid_range[1]} are "
                    f"{self.uid_range[0]}.. and {self.gid_range[0]}.. (newuidmap, newgidmap)")
        return (f"user namespace: uid {self.uid} and gid {self.gid} are 0 inside, nothing else mapped "
                "(setgroups denied)")


def for_this_process() -> UserNs | None:
    """None as root (the root rung needs no user namespace); else the rootless mode the
    probes found, or None when this host gives a user no container at all."""
    if os.geteuid() == 0:
        return None
    from . import rungs

    result = rungs.probe()
    if not result.rung.startswith("rootless"):
        return None
    multi = {}
    if result.rung == "rootless-multi-id":
        import shutil

        from .probes import HELPER_PATH

        multi = {"uid_range": result.host.subuid, "gid_range": result.host.subgid,
                 "helpers": tuple(shutil.which(t, path=HELPER_PATH) or t for t in ("newuidmap", "newgidmap"))}
    return UserNs(os.geteuid(), os.getegid(), pid=result.has("pidns"), uts=result.has("uts"),
                  net=result.has("netns"), **multi)


# Without a cgroup, the limits a rootless container can still have are per-process
# rlimits (getrlimit(2)), honestly approximate: RLIMIT_AS caps each process's address
# space (not the container's memory: mapped-but-unused pages count, shared ones count
# in every process); RLIMIT_NPROC counts the processes of the container's root in its
# own user namespace (the kernel counts them per user namespace), so it acts as a pids
# limit.  A CPU share has no rlimit (RLIMIT_CPU is seconds of CPU in all): refused.
RLIMITS = {"memory": ("RLIMIT_AS", resource.RLIMIT_AS), "pids_limit": ("RLIMIT_NPROC", resource.RLIMIT_NPROC)}


def rlimits_for(limits) -> tuple[tuple[int, int, str], ...]:
    """(resource, value, text) for each limit that has an rlimit; raises HostUnsupported
    naming the first that has none."""
    from .errors import HostUnsupported

    found = []
    for name in ("memory", "memory_swap", "cpus", "pids_limit", "cpu_shares", "cpuset_cpus", "blkio_weight"):
        value = getattr(limits, name, None)
        if value is None:
            continue
        if name not in RLIMITS:
            option = "--" + name.replace("_", "-")
            raise HostUnsupported(
                f"{option} needs a cgroup, and this host delegates none to uid {os.geteuid()} (without one, "
                "--memory and --pids-limit become rlimits, nothing else can): on cgroup v2 ask for "
                "Delegate=yes (systemd) or a pod whose cgroup is writable; on v1 root must make and chown a "
                "subtree (`containerlab-magic doctor` prints the commands); or drop " + option)
        label, number = RLIMITS[name]
        found.append((number, int(value), f"{label}={value}"))
    return tuple(found)


def set_rlimits(rlimits) -> None:
    """In PID 1 or an exec'd process, before exec: the container's rlimits, soft and hard."""
    for number, value, _ in rlimits:
        resource.setrlimit(number, (value, value))
