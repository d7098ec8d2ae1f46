"""An OCI bundle whose process looks like a notebook in a locked-down Kubernetes pod.

What z2jh and mybinder.org give a user pod (their charts, read at the commits
in ../../shared/notes/rootless-and-pods.md): uid 1000, `allowPrivilegeEscalation:
false` (no_new_privs), no capabilities in effect, the runtime's masked and
read-only /proc paths (`procMount: Default`), /sys and /sys/fs/cgroup mounted
read-only, and a seccomp profile that depends on the node (profiles.py).  The
bundle's root is empty and read-only; the host's /usr, /etc and /lib* are bound
read-only so that programs run, and the caller binds in what it needs (the
checkout, the Python prefix).  runtime-spec: config.md, config-linux.md.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from . import profiles

RUNC_MASKED = ("/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
               "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware")
RUNC_READONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
HOST_DIRS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
HOME = "/home/jovyan"
USERNS_BASE = 3_000_000_000 // 65536 * 65536  # far above any user's or /etc/subuid's ids


@dataclass(frozen=True)
class Pod:
    seccomp: str = "crio"  # "unconfined", "crio" or "containerd" (profiles.py)
    unmasked_proc: bool = False  # Kubernetes procMount: Unmasked
    uid: int = 1000
    gid: int = 1000
    binds: tuple[tuple[str, str], ...] = ()  # (host path, pod path), read-only
    env: tuple[str, ...] = ()
    cwd: str = HOME
    rlimits: tuple[tuple[str, int], ...] = ()  # ("RLIMIT_NPROC", 1): soft = hard
    host_users: bool = True  # False: the pod gets a user namespace of its own (Kubernetes hostUsers)
    pod_id: str = "clabpod"  # names the pod's cgroup under /clabpod/

    def describe(self) -> str:
        proc = "unmasked /proc" if self.unmasked_proc else "masked /proc"
        users = "" if self.host_users else ", own user namespace"
        return f"uid {self.uid}, no caps, no_new_privs, seccomp {self.seccomp}, {proc}{users}"


def _mounts(pod: Pod, rootfs: str) -> list[dict]:
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755", "size=64k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
        {"destination": HOME, "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "mode=700", f"uid={pod.uid}", f"gid={pod.gid}"]},
    ]
    for path in HOST_DIRS:
        if os.path.islink(path):  # merged /usr: /bin -> usr/bin stays a symlink in the pod
            link = os.path.join(rootfs, path.lstrip("/"))
            if not os.path.lexists(link):
                os.symlink(os.readlink(path), link)
        elif os.path.isdir(path):
            mounts.append({"destination": path, "type": "bind", "source": path,
                           "options": ["rbind", "ro", "nosuid", "nodev"]})
    for source, destination in pod.binds:
        mounts.append({"destination": destination, "type": "bind", "source": source,
                       "options": ["rbind", "ro", "nosuid", "nodev"]})
    return mounts


def _linux(pod: Pod) -> dict:
    linux = {
        "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
        "cgroupsPath": f"/clabpod/{pod.pod_id}",
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "maskedPaths": [] if pod.unmasked_proc else list(RUNC_MASKED),
        "readonlyPaths": [] if pod.unmasked_proc else list(RUNC_READONLY),
    }
    if not pod.host_users:  # like the kubelet: 65536 ids of the host from a range nobody else uses
        linux["namespaces"].append({"type": "user"})
        linux["uidMappings"] = [{"containerID": 0, "hostID": USERNS_BASE, "size": 65536}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": USERNS_BASE, "size": 65536}]
    seccomp = profiles.profile(pod.seccomp)
    if seccomp is not None:
        linux["seccomp"] = seccomp
    return linux


def write(pod: Pod, bundle: str, argv: list[str]) -> str:
    """Write bundle/config.json and an empty bundle/rootfs; returns the bundle path."""
    rootfs = os.path.join(bundle, "rootfs")
    os.makedirs(rootfs, exist_ok=True)
    if not pod.host_users:  # the pod's root must be able to reach its own root filesystem
        os.chmod(bundle, 0o711)
        os.chown(rootfs, USERNS_BASE, USERNS_BASE)
    config = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": pod.uid, "gid": pod.gid, "additionalGids": [100]},  # z2jh's fsGid 100
            "args": list(argv),
            "env": ["PATH=/usr/local/bin:/usr/bin:/bin", f"HOME={HOME}", "LANG=C.UTF-8", *pod.env],
            "cwd": pod.cwd,
            "capabilities": {s: [] for s in ("bounding", "effective", "inheritable", "permitted", "ambient")},
            "noNewPrivileges": True,
            "rlimits": [{"type": kind, "soft": value, "hard": value} for kind, value in pod.rlimits],
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "jupyter-student",
        "mounts": _mounts(pod, rootfs),
        "linux": _linux(pod),
    }
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    return bundle

