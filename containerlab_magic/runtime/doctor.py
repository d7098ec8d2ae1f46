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
    out += _security_checks()
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


def _security_checks() -> list[Check]:
    """Seccomp (the kernel's filter mode and libseccomp), the device policy, the host filter."""
    from .security import seccomp

    why = seccomp.supported()
    out = [Check("seccomp", why is None, "filters and libseccomp available: Docker's default profile applies"
                 if why is None else why, "" if why is None else "apt-get install libseccomp2 (and a kernel "
                 "with CONFIG_SECCOMP_FILTER), or run with --security-opt seccomp=unconfined")]
    try:
        from .cgroups import open_manager

        manager = open_manager()
    except ImportError:
        manager = None
    if manager is None:
        out.append(Check("device policy", False, "no cgroups: nothing stops a device node from opening",
                         "run as root with cgroups (binds stay nodev either way)"))
    elif manager.version == 1:
        ok = "devices" in getattr(manager, "controllers", {})
        out.append(Check("device policy", ok, "v1 devices controller: Docker's allowlist" if ok else
                         "the v1 devices controller " + manager.why_missing("devices"),
                         "" if ok else "mount the devices controller at /sys/fs/cgroup/devices"))
    else:
        out.append(Check("device policy", True, "v2: a BPF_PROG_TYPE_CGROUP_DEVICE program per container "
                         "(Docker's allowlist)"))
    nft = shutil.which("nft", path="/usr/sbin:/usr/bin:/sbin:/bin")
    out.append(Check("host filter", nft is not None, f"nftables ({nft}): containers reach the host only "
                     "through published ports" if nft else "no nft binary: lab networks cannot be made",
                     "" if nft else "apt-get install nftables"))
    return out


def report() -> str:
    lines = []
    for check in checks():
        mark = "ok  " if check.ok else "MISSING"
        line = f"{mark:8} {check.name:28} {check.detail}"
        if check.fix:
            line += f"\n{'':8} {'':28} fix: {check.fix}"
        lines.append(line)
    return "\n".join(lines)
