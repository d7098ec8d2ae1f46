"""Seccomp profiles in Docker's format: check, compile to BPF once, load before exec.

seccomp(2) lets a process install a filter that every later system call of it
and its children passes through; the filter answers allow, fail with an errno,
or kill.  A container gets Docker's default profile (default_profile.py): an
allowlist of ~370 calls, everything else fails with EPERM; clone is allowed
only without namespace flags and clone3 fails with ENOSYS (so libc falls back
to clone, where the flags can be seen), unless the container has CAP_SYS_ADMIN;
calls gated by a capability (reboot: CAP_SYS_BOOT, ...) are allowed only when
the container keeps that capability.

`compile_profile` turns a profile plus the container's capabilities into BPF
bytes with libseccomp (libseccomp.py), in the shim, cached per distinct pair;
`load` installs those bytes with prctl(PR_SET_SECCOMP) in the container's PID 1
as its very last step before execve(2).  Man pages: seccomp(2), prctl(2),
seccomp_rule_add(3); Docker's format: docs.docker.com "Seccomp security profiles".
"""

from __future__ import annotations

import ctypes
import json
import os
import platform

from ..errors import SpecError
from . import libseccomp

PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
EPERM = 1
MAX_ERRNO = 4095  # the kernel's: errno values are 1..4095

ACTIONS = {"SCMP_ACT_KILL": libseccomp.ACT_KILL_THREAD, "SCMP_ACT_KILL_THREAD": libseccomp.ACT_KILL_THREAD,
           "SCMP_ACT_KILL_PROCESS": libseccomp.ACT_KILL_PROCESS, "SCMP_ACT_TRAP": libseccomp.ACT_TRAP,
           "SCMP_ACT_ERRNO": libseccomp.ACT_ERRNO, "SCMP_ACT_TRACE": libseccomp.ACT_TRACE,
           "SCMP_ACT_LOG": libseccomp.ACT_LOG, "SCMP_ACT_ALLOW": libseccomp.ACT_ALLOW}
# Go's names for architectures, as Docker profiles' "includes": {"arches": [...]} use them.
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "armv7l": "arm", "ppc64le": "ppc64le",
           "s390x": "s390x", "riscv64": "riscv64", "loongarch64": "loong64"}
PROFILE_KEYS = {"defaultAction", "defaultErrnoRet", "architectures", "archMap", "syscalls", "flags",
                "listenerPath", "listenerMetadata", "comment"}


def _fix(what: str) -> SpecError:
    return SpecError(f"invalid seccomp profile: {what}; give a profile in Docker's format "
                     "(see docs/security.md), or --security-opt seccomp=unconfined")


def parse(text: str) -> dict:
    """The JSON text of a Docker-format profile -> dict, checked; SpecError (one line) if not."""
    try:
        profile = json.loads(text)
    except ValueError as e:
        raise _fix(f"not JSON ({e})") from None
    if not isinstance(profile, dict):
        raise _fix("the top level must be an object")
    unknown = set(profile) - PROFILE_KEYS
    if unknown:
        raise _fix(f"unknown key {sorted(unknown)[0]!r}")
    _check_action(profile.get("defaultAction"), "defaultAction")
    if "defaultErrnoRet" in profile:
        _check_errno(profile["defaultErrnoRet"], "defaultErrnoRet")
    for entry in profile.get("archMap") or ():
        for name in [entry.get("architecture"), *(entry.get("subArchitectures") or ())]:
            _check_arch(name)
    for name in profile.get("architectures") or ():
        _check_arch(name)
    syscalls = profile.get("syscalls") or []
    if not isinstance(syscalls, list):
        raise _fix("syscalls must be a list")
    for i, rule in enumerate(syscalls):
        _check_rule(rule, i)
    return profile


def _check_errno(value: object, where: str) -> None:
    if not (type(value) is int and 0 <= value <= MAX_ERRNO):
        raise _fix(f"{where} {value!r} is not an errno from 0 to {MAX_ERRNO}")


def _check_action(action: object, where: str) -> None:
    if action not in ACTIONS:
        raise _fix(f"{where} {action!r} is not one of {', '.join(ACTIONS)}")


def _check_arch(name: object) -> None:
    if not isinstance(name, str) or not name.startswith("SCMP_ARCH_"):
        raise _fix(f"architecture {name!r} must be written like SCMP_ARCH_X86_64")


def _check_rule(rule: object, i: int) -> None:
    if not isinstance(rule, dict):
        raise _fix(f"syscalls[{i}] must be an object")
    names = rule.get("names") if "names" in rule else ([rule["name"]] if "name" in rule else None)
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise _fix(f"syscalls[{i}] needs \"names\": a list of syscall names")
    _check_action(rule.get("action"), f"syscalls[{i}].action")
    if "errnoRet" in rule:
        _check_errno(rule["errnoRet"], f"syscalls[{i}].errnoRet")
    for arg in rule.get("args") or ():
        if not isinstance(arg, dict) or arg.get("op") not in libseccomp.CMP_OPS:
            raise _fix(f"syscalls[{i}] has an argument without a valid op (SCMP_CMP_EQ, ...)")
        if not (isinstance(arg.get("index"), int) and 0 <= arg["index"] <= 5):
            raise _fix(f"syscalls[{i}] has an argument index outside 0-5")
        if not all(isinstance(arg.get(k, 0), int) and arg.get(k, 0) >= 0 for k in ("value", "valueTwo")):
            raise _fix(f"syscalls[{i}] has an argument value that is not a non-negative integer")


def _action(name: str, errno_ret: int | None) -> int:
    action = ACTIONS[name]
    if name in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        action |= (EPERM if errno_ret is None else errno_ret) & 0xFFFF
    return action


def _kernel_at_least(version: str) -> bool:
    def numbers(text: str) -> tuple[int, ...]:
        return tuple(int("".join(c for c in part if c.isdigit()) or 0) for part in text.split(".")[:2])
    return numbers(os.uname().release) >= numbers(version)


def _applies(rule: dict, caps: frozenset[str], arch: str) -> bool:
    """Docker's includes/excludes: every included capability held, no excluded one; arch; kernel."""
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if exc.get("arches") and arch in exc["arches"]:
        return False
    if inc.get("caps") and not all(c in caps for c in inc["caps"]):
        return False
    if exc.get("caps") and any(c in caps for c in exc["caps"]):
        return False
    if inc.get("minKernel") and not _kernel_at_least(inc["minKernel"]):
        return False
    return True


def _arches(profile: dict, compat: bool) -> list[str]:
    """libseccomp names of the architectures to filter: the native one and (compat) the
    others its kernel runs, such as 32-bit x86 on x86_64."""
    names = list(profile.get("architectures") or ())
    native = platform.machine()
    for entry in profile.get("archMap") or ():
        if entry["architecture"][len("SCMP_ARCH_"):].lower() == native:
            names += [entry["architecture"], *((entry.get("subArchitectures") or ()) if compat else ())]
    return [n[len("SCMP_ARCH_"):].lower() for n in names]


def _arg_sets(args: list[dict]) -> list[list[tuple[int, int, int, int]]]:
    """One rule's comparisons; as runc does, two on the same argument become two rules (either may match)."""
    cmps = [(a["index"], libseccomp.CMP_OPS[a["op"]], a.get("value", 0), a.get("valueTwo", 0)) for a in args]
    if len({c[0] for c in cmps}) == len(cmps):
        return [cmps]
    return [[c] for c in cmps]


_cache: dict[tuple[str, frozenset[str]], bytes] = {}


def compile_profile(profile: dict, caps: frozenset[str], key: str | None = None, compat: bool = True) -> bytes:
    """The BPF program (struct sock_filter[]) for `profile` and these capabilities ("CAP_CHOWN", ...).

    Cached under `key` (the profile's text), so each distinct profile compiles once per shim.
    compat=False filters the native architecture only: a syscall of another (32-bit x86 on
    x86_64) kills the process.  The kernel checks and compiles a filter at every load, in
    time about linear in its length; the compat branches triple it (measured here: ~0.25 ms
    a container start of the ~0.4 ms the default profile costs).
    """
    if key is not None and (key, caps) in _cache:
        return _cache[(key, caps)]
    default = _action(profile["defaultAction"], profile.get("defaultErrnoRet"))
    flt = libseccomp.Filter(default, libseccomp.ACT_KILL_PROCESS)
    try:
        for name in _arches(profile, compat):
            token = libseccomp.arch_token(name)
            if token:  # an architecture this libseccomp lacks cannot run here either
                flt.add_arch(token)
        arch = GO_ARCH.get(platform.machine(), platform.machine())
        for rule in profile.get("syscalls") or ():
            if not _applies(rule, caps, arch):
                continue
            action = _action(rule["action"], rule.get("errnoRet", profile.get("defaultErrnoRet")))
            if action == default:
                continue  # libseccomp refuses a rule that changes nothing
            names = rule["names"] if "names" in rule else [rule["name"]]
            for name in names:
                number = flt.syscall_number(name)
                if number is None:
                    continue  # newer than this libseccomp: as Docker, skip it
                for args in _arg_sets(rule.get("args") or []):
                    try:
                        flt.add_rule(action, number, args)
                    except OSError as e:  # a rule libseccomp cannot express: the profile's fault
                        raise _fix(f"libseccomp refuses the rule for {name} "
                                   f"({e.strerror or e}; an argument value past 64 bits?)") from None
        program = flt.export()
    finally:
        flt.release()
    if key is not None:
        _cache[(key, caps)] = program
    return program


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load(program: bytes) -> None:
    """Install a BPF filter on this process (seccomp(2) SECCOMP_MODE_FILTER): from now on, for good.

    Needs no_new_privs or CAP_SYS_ADMIN.  Each struct sock_filter is 8 bytes.
    """
    from .. import linux

    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.addressof(buffer))
    linux.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))


def supported() -> str | None:
    """None when seccomp filters and libseccomp both work here, else why not (for doctor)."""
    try:
        with open("/proc/self/status") as f:
            if not any(line.startswith("Seccomp:") for line in f):
                return "this kernel has no seccomp (CONFIG_SECCOMP_FILTER)"
        libseccomp.lib()
    except OSError as e:
        return e.strerror or str(e)
    return None
