"""Seccomp profiles of the container runtimes a notebook pod may run under.

Kubernetes gives a pod with no `seccompProfile` no filter at all unless the
kubelet's `seccompDefault` is on; with it (or `RuntimeDefault`), the profile is
the container runtime's own:

- **CRI-O** uses containers-common's seccomp.json (Debian package
  golang-github-containers-common): unshare, mount, setns, pivot_root and the
  new mount API are allowed to anyone; sethostname needs CAP_SYS_ADMIN; the
  default errno is ENOSYS.
- **containerd** uses a profile derived from moby's: the namespace and mount
  calls need CAP_SYS_ADMIN, clone is allowed only without CLONE_NEW* flags,
  clone3 gives ENOSYS (so libc falls back to clone), default errno EPERM.

The containerd-like profile here is containers-common's with those calls taken
out: an approximation, close enough for what the ladder probes.  Both are
converted to the OCI form for a process with an empty capability set, as runc
would get them from a kubelet (seccomp(2), runtime-spec config-linux.md).
"""

from __future__ import annotations

import json
import os
import platform

CONTAINERS_COMMON = "/usr/share/containers/seccomp.json"

# Allowed unconditionally by containers-common, but only with CAP_SYS_ADMIN by containerd.
NEEDS_SYS_ADMIN = frozenset({
    "clone", "clone3", "fsconfig", "fsmount", "fsopen", "fspick", "keyctl", "mount", "mount_setattr",
    "move_mount", "open_tree", "pivot_root", "setns", "umount", "umount2", "unshare"})
CLONE_NEW_FLAGS = 0x7E020000  # NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
ENOSYS, EPERM = 38, 1

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
_SCMP_ARCH = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64"}.get(_GOARCH)


def available() -> bool:
    return os.path.isfile(CONTAINERS_COMMON)


def _kernel() -> tuple[int, int]:
    major, minor = platform.release().split("-")[0].split(".")[:2]
    return int(major), int(minor)


def _applies(rule: dict) -> bool:
    """Does a containers-common rule apply to a process without capabilities on this machine?"""
    includes, excludes = rule.get("includes") or {}, rule.get("excludes") or {}
    if includes.get("caps"):
        return False
    if includes.get("arches") and _GOARCH not in includes["arches"]:
        return False
    if excludes.get("arches") and _GOARCH in excludes["arches"]:
        return False
    if includes.get("minKernel"):
        want = tuple(int(x) for x in includes["minKernel"].split(".")[:2])
        if _kernel() < want:
            return False
    return True


def crio() -> dict:
    """containers-common's profile in OCI form, for an empty capability set."""
    with open(CONTAINERS_COMMON) as f:
        source = json.load(f)
    arches = next(([m["architecture"], *(m.get("subArchitectures") or [])]
                   for m in source.get("archMap") or [] if m["architecture"] == _SCMP_ARCH), [])
    syscalls = []
    for rule in source["syscalls"]:
        if not rule.get("names") or not _applies(rule):
            continue
        oci = {"names": list(rule["names"]), "action": rule["action"]}
        if rule.get("args"):
            oci["args"] = [{k: a[k] for k in ("index", "value", "valueTwo", "op") if k in a} for a in rule["args"]]
        if rule.get("errnoRet") is not None:
            oci["errnoRet"] = rule["errnoRet"]
        syscalls.append(oci)
    profile = {"defaultAction": source["defaultAction"], "architectures": arches, "syscalls": syscalls}
    if source.get("defaultErrnoRet") is not None:
        profile["defaultErrnoRet"] = source["defaultErrnoRet"]
    return profile


def containerd() -> dict:
    """crio() tightened like containerd's RuntimeDefault for a process without CAP_SYS_ADMIN."""
    profile = crio()
    syscalls = []
    for rule in profile["syscalls"]:
        if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args"):
            names = [n for n in rule["names"] if n not in NEEDS_SYS_ADMIN]
            if not names:
                continue
            rule = {**rule, "names": names}
        syscalls.append(rule)
    syscalls.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": CLONE_NEW_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]})
    syscalls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    return {**profile, "syscalls": syscalls, "defaultErrnoRet": EPERM}


def profile(name: str) -> dict | None:
    """None for `unconfined` (no filter), else the OCI seccomp object."""
    return {"unconfined": lambda: None, "crio": crio, "containerd": containerd}[name]()
