"""What this host can do, and the fix for each thing it cannot.

Each check looks at the kernel directly (the /proc/self/ns entries, the
filesystems the kernel knows, the cgroup mounts) and, when something is
missing, says how to get it.  `containerlab doctor` and `%container doctor`
print this list; a container that needs a missing feature fails with the same
words.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def checks() -> list[Check]:
    out: list[Check] = []
    root = os.geteuid() == 0
    out.append(Check("root", root, "running as root" if root else f"running as uid {os.geteuid()}",
                     "" if root else "run as root (rootless containers are not supported yet)"))
    for ns in ("pid", "mnt", "uts", "ipc", "net", "cgroup", "user"):
        ok = os.path.exists(f"/proc/self/ns/{ns}")
        out.append(Check(f"{ns} namespace", ok, "available" if ok else "missing from /proc/self/ns",
                         "" if ok else f"use a kernel built with CONFIG_{ns.upper()}_NS"))
    max_userns = _read("/proc/sys/user/max_user_namespaces")
    clone = _read("/proc/sys/kernel/unprivileged_userns_clone")
    userns_ok = max_userns not in (None, "0") and clone != "0"
    out.append(Check("user namespaces", userns_ok,
                     f"max_user_namespaces={max_userns}" + (f", unprivileged_userns_clone={clone}" if clone else ""),
                     "" if userns_ok else "sysctl -w user.max_user_namespaces=15000 (and kernel.unprivileged_userns_clone=1)"))
    filesystems = _read("/proc/filesystems") or ""
    overlay = "overlay" in filesystems
    out.append(Check("overlayfs", overlay, "in /proc/filesystems" if overlay else "not in /proc/filesystems",
                     "" if overlay else "modprobe overlay"))
    out.append(Check("pidfd", hasattr(os, "pidfd_open"), "os.pidfd_open available",
                     "" if hasattr(os, "pidfd_open") else "use Linux >= 5.3 and Python >= 3.9"))
    out.append(_cgroup_check())
    busybox = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if os.path.isfile(p)), None)
    out.append(Check("busybox image", busybox is not None, busybox or "no static busybox binary",
                     "" if busybox else "apt-get install busybox-static"))
    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    out.append(Check("python3 in the host image", python is not None, python or "no python3 under /usr",
                     "" if python else "apt-get install python3 (needed for --python cells)"))
    return out


def _cgroup_check() -> Check:
    try:
        from .cgroups import open_manager
    except ImportError:
        return Check("cgroups", False, "cgroup driver not installed", "reinstall containerlab_magic")
    manager = open_manager()
    if manager is None:
        return Check("cgroups", False, "no writable cgroup hierarchy: containers run, limits cannot be applied",
                     "run as root, or in a systemd unit with Delegate=yes")
    info = manager.describe()
    controllers = info.get("controllers")
    if isinstance(controllers, (list, tuple, set)):
        controllers = " ".join(sorted(controllers))
    return Check("cgroups", True, f"v{manager.version} at {info.get('root') or info.get('roots')}: {controllers}")


def report() -> str:
    lines = []
    for check in checks():
        mark = "ok  " if check.ok else "MISSING"
        line = f"{mark:8} {check.name:28} {check.detail}"
        if check.fix:
            line += f"\n{'':8} {'':28} fix: {check.fix}"
        lines.append(line)
    return "\n".join(lines)
