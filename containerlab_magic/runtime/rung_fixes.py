"""The fix for each failed rung probe, chosen from the errno and the host's facts.

One probe fails for different reasons on different hosts: unshare(2) gives
EPERM under a seccomp filter, under AppArmor's userns restriction, or under
Debian's old `kernel.unprivileged_userns_clone=0`, and ENOSPC when
`user.max_user_namespaces` is 0 (user_namespaces(7)).  The fix names the
setting to change and what the lab does meanwhile.  docs/jupyterhub.md has
the Kubernetes side of each.
"""

from __future__ import annotations

import errno
import os

DOCS = "docs/jupyterhub.md"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _userns(err, host) -> str:
    if err == errno.ENOSPC:
        return ("user namespaces are switched off (user.max_user_namespaces=0): as root "
                "`sysctl -w user.max_user_namespaces=15000`; meanwhile the process sandbox is used")
    if err == errno.EINVAL:
        return "this kernel lacks CONFIG_USER_NS; meanwhile the process sandbox is used"
    if host.seccomp == 2:
        return ("a seccomp profile forbids unshare(2) (containerd's RuntimeDefault does): give the pod "
                f"seccompProfile Unconfined, or run it on CRI-O ({DOCS}); meanwhile the process sandbox is used")
    if host.apparmor_restricts_userns:
        return ("AppArmor restricts unprivileged user namespaces: as root "
                "`sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`, or give python an AppArmor profile "
                "with `userns,`")
    if _read("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        return "as root: `sysctl -w kernel.unprivileged_userns_clone=1`"
    return "unprivileged user namespaces are refused here: run as root, or ask the administrator to allow them"


def _map_multi(err, host, detail) -> str:
    if "not installed" in detail:
        return "as root: `apt-get install uidmap` (newuidmap/newgidmap); meanwhile image files have one owner"
    if host.no_new_privs:
        return ("no_new_privs is set (Kubernetes allowPrivilegeEscalation: false), so the setuid newuidmap gains "
                "nothing: image files have one owner (single-id); multi-id needs allowPrivilegeEscalation: true"
                + (" and /etc/subuid, /etc/subgid entries" if err == errno.ENOENT else ""))
    if err == errno.ENOENT:
        return (f"as root: `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {host.user}`; "
                "meanwhile image files have one owner (single-id)")
    return f"newuidmap refused the range: check the {host.user} lines of /etc/subuid and /etc/subgid"


def _cgroup(err, host, detail, access) -> str:
    if access is not None and access.ok and not access.controllers:
        return ("the delegated cgroup v2 subtree has no controllers (a v1/v2 hybrid host): kill and freeze only; "
                "limits are rlimits. Boot with systemd.unified_cgroup_hierarchy=1 for cgroup limits")
    if err == errno.EROFS:
        return ("/sys/fs/cgroup is read-only (a container or pod): limits are rlimits (approximations); "
                f"for cgroup limits run a privileged pod ({DOCS})")
    if host.uid == 0:
        return "run as root on the host, or in a privileged container with a writable /sys/fs/cgroup"
    if access is not None and access.version == 2:
        return ("no cgroup v2 subtree is delegated to uid %d: start Jupyter with "
                "`systemd-run --user --scope -p Delegate=yes jupyter lab`, or set Delegate=yes on the "
                "JupyterHub spawner's unit (%s); meanwhile limits are rlimits" % (host.uid, DOCS))
    group = f"/sys/fs/cgroup/$c/containerlab/user-{host.uid}"
    return (f"cgroup v1 delegates nothing to {host.user}: as root, `for c in memory pids cpu; do "
            f"mkdir -p {group}; chown {host.user}: {group}"
            "{,/cgroup.procs,/tasks}; done`, or boot cgroup v2 with Delegate=yes; meanwhile limits are rlimits")


SIMPLE = {
    "root-ns": "root without CAP_SYS_ADMIN (an unprivileged container?): the rootless rungs are tried; "
               f"for the root rung run a privileged pod ({DOCS})",
    "map-single": "writing uid_map was refused: the rootless rungs need it (is /proc mounted read-only?)",
    "mount": "mount(2) in a user namespace was refused (a seccomp profile or LSM): the process sandbox is used",
    "pidns": ("the pod's /proc has masked paths, so the kernel refuses a fresh /proc: containers share the "
              "pod's PID namespace. On Kubernetes set securityContext.procMount: Unmasked with hostUsers: false "
              f"({DOCS})"),
    "netns": "a network namespace cannot be made: containers share the host's network and --net is refused",
    "seccomp": "no seccomp filter can be installed (kernel without CONFIG_SECCOMP_FILTER?): containers run "
               "without a syscall filter",
    "sandbox": "even a plain child cannot get its own session and a private temporary directory: check TMPDIR",
}


def fix_for(name: str, err: int | None, host, detail: str = "", access=None) -> str:
    if name == "userns":
        return _userns(err, host)
    if name == "map-multi":
        return _map_multi(err, host, detail)
    if name == "cgroups":
        return _cgroup(err, host, detail, access)
    if name == "map-single" and err == errno.EPERM and host.uid == 0:
        return ("uid 0 without CAP_SETFCAP may not map itself into a user namespace (Linux >= 5.12): run the "
                "notebook as an ordinary user (z2jh singleuser.uid: 1000), or keep CAP_SETFCAP")
    if name == "uts":
        why = " (CRI-O's seccomp profile allows it only with CAP_SYS_ADMIN)" if host.seccomp == 2 else ""
        return f"sethostname is refused{why}: containers keep the host's hostname and --hostname is refused"
    if name == "overlay":
        if err == errno.ENODEV:
            return "as root: `modprobe overlay`"
        if err == errno.EINVAL and os.getuid() != 0:
            return "overlay in a user namespace needs Linux >= 5.11 (userxattr): upgrade the kernel"
        return "overlay mounts are refused: the rootless rungs need them"
    if err == errno.EAGAIN and "fork" in detail:
        return ("no process can be started: this user is at its process limit (RLIMIT_NPROC, or the pod's "
                "pids limit); end some processes or raise the limit")
    return SIMPLE.get(name, "")
