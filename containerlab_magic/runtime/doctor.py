"""What this host can do, and the fix for each thing it cannot.

The isolation rung comes from rungs.py, which *tries* each kernel feature in
a forked child (a sysctl saying user namespaces exist proves nothing under a
seccomp filter); cgroups are reported usable only when a group could really
be made where the lab would make it.  The remaining checks look at files: the
busybox binary the builtin image needs, python3 for --python cells.
`containerlab-magic doctor` and `%container doctor` render this; a container
that needs a missing feature fails with the same words.

    from containerlab_magic.runtime import doctor
    d = doctor.diagnose()     # d.rung, d.result (rungs.Result), d.checks, d.can_start
    print(doctor.report())    # text; `python -m containerlab_magic.runtime.doctor` exits 1 when
                              # no container can start here
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass

from . import rungs


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    status: str = ""  # "ok", "failed", "skipped" (not tried: what it needs is missing)
    errno: str = ""  # the errno's name when a probe failed, e.g. "EPERM"

    def __post_init__(self) -> None:
        self.status = self.status or ("ok" if self.ok else "failed")


@dataclass(frozen=True)
class Diagnosis:
    result: rungs.Result
    checks: tuple[Check, ...]

    @property
    def rung(self) -> str:
        return self.result.rung

    @property
    def can_start(self) -> bool:
        return self.result.can_start


def _probe_checks(result: rungs.Result) -> list[Check]:
    out = []
    for p in result.probes:
        detail = p.what + (f": {p.detail}" if p.detail else "")
        if p.name == "cgroups" and p.ok and not result.cgroup.controllers:
            # Writable but without controllers (a hybrid host's cgroup2): no limits from it.
            out.append(Check("cgroups", False, detail + " (no limits)", p.fix, "failed"))
            continue
        out.append(Check(p.name, bool(p.ok), detail, p.fix, p.status, p.errno_name))
    return out


def _root_cgroup_detail(check: Check) -> Check:
    """As root, the driver's own description (version, roots, controllers, what is missing)."""
    from .cgroups import describe_host

    info = describe_host()
    if not info.get("writable"):
        return Check("cgroups", False, info.get("why_not") or check.detail, check.fix or "run as root on the host")
    missing = "; ".join(f"{k} {v}" for k, v in (info.get("missing") or {}).items())
    detail = f"v{info['version']} at {' '.join(info.get('roots') or [])}: {' '.join(info['controllers'])}"
    return Check("cgroups", True, detail + (f" (missing: {missing})" if missing else ""))


def _file_checks() -> list[Check]:
    out = [Check("pidfd", hasattr(os, "pidfd_open"), "os.pidfd_open available" if hasattr(os, "pidfd_open")
                 else "os.pidfd_open missing", "" if hasattr(os, "pidfd_open") else "use Linux >= 5.3, Python >= 3.9")]
    busybox = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if os.path.isfile(p)), None)
    out.append(Check("busybox image", busybox is not None, busybox or "no static busybox binary",
                     "" if busybox else "apt-get install busybox-static"))
    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    out.append(Check("python3 image", python is not None, python or "no python3 under /usr",
                     "" if python else "apt-get install python3 (needed for --python cells)"))
    return out


def _ports_check() -> Check:
    """Rootless -p: a user-mode network helper forwards 127.0.0.1:PORT into the container's
    network namespace (pasta splices loopback; slirp4netns forwards over its API socket)."""
    helpers = [h for h in ("pasta", "slirp4netns") if shutil.which(h, path="/usr/local/bin:/usr/bin:/bin")]
    tun = os.access("/dev/net/tun", os.R_OK | os.W_OK)
    if helpers and tun:
        return Check("ports", True, f"-p through {helpers[0]} on 127.0.0.1")
    why = "no pasta or slirp4netns" if not helpers else "/dev/net/tun is not usable"
    return Check("ports", False, f"{why}: -p cannot publish ports (containers still reach each other)",
                 "apt-get install passt (or slirp4netns)" if not helpers
                 else "a /dev/net/tun this user may open (mode 0666 on a host; in a pod, from a device plugin)")


def diagnose(refresh: bool = False) -> Diagnosis:
    result = rungs.probe(refresh=refresh)
    found = _probe_checks(result)
    if result.rung == "root":
        found = [_root_cgroup_detail(c) if c.name == "cgroups" else c for c in found]
    if result.rung.startswith("rootless") and result.has("netns"):
        found.append(_ports_check())
    found += _security_checks(root=result.rung == "root")
    return Diagnosis(result, tuple(found + _file_checks()))


def checks() -> list[Check]:
    """Every check, the rung first (its ok says whether any container can start here)."""
    d = diagnose()
    rung = Check("rung", d.can_start, rungs.headline(d.result),
                 "" if d.can_start else "see the failed probes below: no rung works on this host")
    return [rung, *d.checks]


def _security_checks(root: bool) -> list[Check]:
    """Seccomp (the kernel's filter mode and libseccomp); on the root rung also the device
    policy and the host filter (bridges and cgroups are the root rung's)."""
    from .security import seccomp

    why = seccomp.supported()
    out = [Check("seccomp", why is None, "filters and libseccomp available: Docker's default profile applies"
                 if why is None else why, "" if why is None else "apt-get install libseccomp2 (and a kernel "
                 "with CONFIG_SECCOMP_FILTER), or run with --security-opt seccomp=unconfined")]
    if not root:
        return out
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
    d = diagnose()
    h = d.result.host
    lines = [f"rung     {d.rung}" + ("" if d.can_start else "   (the lab cannot start containers here)"),
             f"as       uid {h.uid} ({h.user}), no_new_privs {'on' if h.no_new_privs else 'off'}, seccomp "
             f"{('off', 'strict', 'filter')[h.seccomp] if h.seccomp < 3 else h.seccomp}",
             f"limits   {d.result.limits}", ""]
    for check in d.checks:
        mark = check.status + (f" {check.errno}" if check.errno else "")
        lines.append(f"{mark:15} {check.name:14} {check.detail}")
        if check.fix:
            lines.append(f"{'':15} {'':14} fix: {check.fix}")
    lines.append(f"\nprobed in {d.result.elapsed_ms:.0f} ms")
    return "\n".join(lines)


def main() -> int:
    print(report())
    return 0 if diagnose().can_start else 1


if __name__ == "__main__":
    sys.exit(main())
