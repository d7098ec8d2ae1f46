"""What a container may do once it runs: capabilities, no_new_privs, seccomp, keyring.

The shim turns a spec's --cap-add/--cap-drop/--privileged/--security-opt into
a `Policy` (policy_for): a capability mask, no_new_privs, and the seccomp
filter already compiled to BPF bytes (seccomp.py; compiled once per distinct
profile).  PID 1, after its root filesystem and user lookup, runs `apply` as
the last thing before execve(2), in runc's order:

    own session keyring (keyring.py) -> bounding set -> [seccomp, if no_new_privs
    is off: loading then needs CAP_SYS_ADMIN] -> no_new_privs -> setgroups/setgid/
    setuid + capset (capabilities.py) -> seccomp (last: it may forbid what came before)

Device access is the cgroup drivers' part (devices.py has the policy).
Man pages: capabilities(7), prctl(2), seccomp(2), keyrings(7).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .. import linux
from ..errors import HostUnsupported, SpecError
from . import guards, keyring, seccomp, setid
from .capabilities import (CAPABILITY_NUMBERS, DEFAULT_CAPS, DEFAULT_MASK, bounding_set, drop_bounding,  # noqa: F401
                           no_new_privs, switch_user)
from . import capabilities

__all__ = ["Policy", "policy_for", "is_default", "default_policy", "describe_steps", "check_spec", "apply",
           "prepare", "not_dumpable", "peer_allowed", "describe_bounding", "describe_bounding_for", "DEFAULT_MASK",
           "DEFAULT_CAPS", "CAPABILITY_NUMBERS", "bounding_set", "drop_bounding", "no_new_privs", "switch_user"]


@dataclass(frozen=True)
class Policy:
    caps: int = DEFAULT_MASK  # bounding, permitted and effective set of a root process
    no_new_privs: bool = True
    seccomp: bytes | None = None  # BPF program (struct sock_filter[]); None: unconfined
    keyring: bool = True
    inheritable: int = 0

    @property
    def describe(self) -> str:
        filt = f"seccomp filter of {len(self.seccomp) // 8} instructions" if self.seccomp else "no seccomp"
        return (f"capabilities {', '.join(sorted(capabilities.names(self.caps))) or 'none'}; "
                f"no_new_privs {'on' if self.no_new_privs else 'off'}; {filt}")


def check_spec(spec) -> None:
    """The edge's check of the security fields (SpecError, one line, naming the fix)."""
    capabilities.resolve(spec.cap_add, spec.cap_drop, spec.privileged)
    if spec.seccomp is None or spec.seccomp == "unconfined":
        return
    if spec.privileged:
        raise SpecError("--privileged turns seccomp off, so a seccomp profile cannot apply: "
                        "drop --privileged, or the --security-opt seccomp=FILE")
    seccomp.parse(spec.seccomp)


_default: list[Policy] = []


def prepare() -> None:
    """In the shim, before any container: compile the default profile, read cap_last_cap.
    Where that cannot be done (no libseccomp), each container that needs it is refused
    in one line instead (policy_for), and the shim still serves unconfined ones."""
    if not _default:
        try:
            _default.append(_make(DEFAULT_MASK, True, None, False))
        except HostUnsupported:
            pass


def default_policy() -> Policy:
    if not _default:
        _default.append(_make(DEFAULT_MASK, True, None, False))  # HostUnsupported, one line, if it cannot
    return _default[0]


def is_default(policy: Policy) -> bool:
    """Is this the default policy (what a warm spare has)?  Never compiles anything."""
    return bool(_default) and policy is _default[0]


_host_root: list[bool] = []


def policy_for(spec, sandboxed: bool = False) -> Policy:
    """The policy for one container's spec (in the shim; compiling a new profile costs a few ms).
    sandboxed: the process-sandbox rung's (no capabilities, no_new_privs, its own profile)."""
    if sandboxed:
        return _make(0, True, spec.seccomp, spec.privileged, sandboxed=True)
    caps = capabilities.resolve(spec.cap_add, spec.cap_drop, spec.privileged)
    if not _host_root:
        _host_root.append(setid.host_root())
    no_setid = setid.needed(spec, _host_root[0])  # M7: a writable bind into the host, as its root
    if no_setid:
        caps &= ~(1 << setid.CAP_SETFCAP)
    elif caps == DEFAULT_MASK and spec.no_new_privileges and spec.seccomp is None and not spec.privileged:
        return default_policy()
    return _make(caps, spec.no_new_privileges, spec.seccomp, spec.privileged, no_setid)


def _make(caps: int, nnp: bool, profile_text: str | None, privileged: bool, no_setid: bool = False,
          sandboxed: bool = False) -> Policy:
    from .default_profile import PROFILE

    # capset refuses what we (the shim) do not have ourselves; a rootless PID 1 is cloned into
    # a user namespace of its own, whose bounding set starts full (user_namespaces(7)), so
    # the pod's empty one does not bound it there.
    held = capabilities.bounding_set() if os.geteuid() == 0 else _EVERY
    if caps & ~held and not privileged:
        missing = ", ".join(sorted(capabilities.names(caps & ~held)))
        raise HostUnsupported(f"cannot give the container {missing}: the containerlab shim does not hold it "
                              "here (it runs in a restricted container?); drop that --cap-add")
    caps &= held
    program = None
    if not privileged and profile_text != "unconfined" and not guards.disabled("seccomp"):
        profile = PROFILE if profile_text is None else seccomp.parse(profile_text)
        if no_setid:
            profile = setid.restrict(profile)
        if sandboxed:
            from .. import sandbox

            profile = sandbox.profile_for(profile)
        # Our default filters the native architecture only (a lab runs no 32-bit binaries;
        # it halves the load time); a profile file gets its archMap as written.
        try:
            program = seccomp.compile_profile(profile, capabilities.names(caps),
                                              key=(profile_text or "default") + (" no-setid" if no_setid else "")
                                              + (f" sandbox {','.join(_sandbox_blocked())}" if sandboxed else ""),
                                              compat=profile_text is not None)
        except OSError as e:
            raise HostUnsupported(f"cannot build the seccomp filter ({e.strerror or e}): install libseccomp2, "
                                  "or run with --security-opt seccomp=unconfined") from None
    inheritable = caps if guards.disabled("inheritable-caps") else 0
    return Policy(caps, nnp, program, not guards.disabled("keyring"), inheritable)


def _sandbox_blocked() -> tuple[str, ...]:
    from ..sandbox import blocked

    return blocked()


def peer_allowed(conn) -> bool:
    """The daemon socket serves root and its own user only (SO_PEERCRED, unix(7)), whatever
    the socket file's mode says."""
    import socket
    import struct

    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid in (0, os.getuid()) or guards.disabled("peer-check")


def not_dumpable() -> None:
    """PR_SET_DUMPABLE 0: no ptrace or /proc/PID/{mem,environ,fd} of this process by others
    of its uid; reset by execve(2).  For exec, before joining the container (as runc)."""
    if not guards.disabled("exec-nondumpable"):
        linux.prctl(linux.PR_SET_DUMPABLE, 0)


def apply(policy: Policy | None, uid: int, gid: int, groups: list[int], mark=None,
          bounding_dropped: bool = False) -> None:
    """In PID 1 (or an exec'd process), last before execve: never returns a weaker state.
    mark(step, description), given when explain was asked for, closes each of explain's
    steps: keyring, security (bounding set, no_new_privs, user, capabilities), seccomp.
    bounding_dropped: a new PID 1 dropped its bounding set already, before the shim's go
    (only execve reads it; child._drop_bounding_early)."""
    policy = policy or default_policy()
    if policy.keyring:
        keyring.join_new_session()
        if mark:
            mark("keyring", "join a new, empty session keyring (keyctl JOIN_SESSION_KEYRING)")
    if not bounding_dropped:
        drop_bounding(policy.caps)
    if policy.seccomp is not None and not policy.no_new_privs:
        seccomp.load(policy.seccomp)  # still privileged: without no_new_privs this needs CAP_SYS_ADMIN
        if mark:
            mark("seccomp", f"load the seccomp filter ({len(policy.seccomp) // 8} BPF instructions) "
                            "before no_new_privs (it is off), while still privileged")
    if policy.no_new_privs:
        no_new_privs()
    switch_user(uid, gid, groups, policy.caps, policy.inheritable)
    if mark:
        mark("security", _describe_privileges(policy, uid, bounding_dropped))
    if policy.seccomp is not None and policy.no_new_privs:
        seccomp.load(policy.seccomp)
        if mark:
            mark("seccomp", f"load the seccomp filter ({len(policy.seccomp) // 8} BPF instructions), last")


def describe_steps(spec) -> list[tuple[str, str]]:
    """The steps apply() takes for `spec`, for a dry run (nothing compiled, nothing run)."""
    steps = [] if guards.disabled("keyring") else [
        ("keyring", "join a new, empty session keyring (keyctl JOIN_SESSION_KEYRING)")]
    steps.append(("security", f"no_new_privs {'on' if spec.no_new_privileges else 'off'}, setuid to "
                              f"{spec.user or 'root'}, capabilities as the bounding set (none unless root)"))
    if spec.privileged or spec.seccomp == "unconfined" or guards.disabled("seccomp"):
        steps.append(("seccomp", "no seccomp filter (" + ("--privileged" if spec.privileged else "unconfined") + ")"))
    else:
        what = "Docker's default profile" if spec.seccomp is None else "the profile given"
        steps.append(("seccomp", f"load the seccomp filter ({what}), last"))
    return steps


def _caps_text(caps: int) -> str:
    if caps == DEFAULT_MASK:
        return "Docker's 14 default capabilities"
    if caps & _EVERY == _EVERY:
        return "every capability"
    return f"capabilities {', '.join(sorted(capabilities.names(caps))) or 'none'}"


_EVERY = sum(1 << bit for bit in CAPABILITY_NUMBERS.values())


def describe_bounding_for(spec) -> str:
    """The bounding step for `spec`, for a dry run."""
    return describe_bounding(capabilities.resolve(spec.cap_add, spec.cap_drop, spec.privileged))


def describe_bounding(caps: int) -> str:
    """The bounding step of explain (a new PID 1 drops its bounding set before the go)."""
    return f"bounding set to {_caps_text(caps)} (only execve reads it: dropped while the shim works)"


def _describe_privileges(policy: Policy, uid: int, bounding_dropped: bool = False) -> str:
    caps = _caps_text(policy.caps)
    kept = caps if uid == 0 else "no capabilities"
    bounding = "" if bounding_dropped else f"bounding set to {caps}, "
    return f"{bounding}no_new_privs {'on' if policy.no_new_privs else 'off'}, setuid {uid}: {kept}"
