"""M7, the host's side: no setuid, setgid or file-capability files made through a bind.

Binds are mounted nosuid (binds.py), so a setuid file in one gives nothing
inside the container.  On the host it is another matter: when the lab runs as
root without a user namespace (the root rung), the container's root is the
host's root, and a `chmod u+s` (or a setuid mode at open/creat/mknod, or a
`security.capability` xattr) on a file in a writable bind leaves a real
setuid-root program in a host directory, where any host user who can reach it
(a student's home, a shared course folder) runs it as root.  Docker has the
same hole; we close it for the containers that have it:

* the seccomp profile allows chmod, fchmod, fchmodat(2), mknod(at), creat,
  open and openat only without S_ISUID/S_ISGID in the mode (open and openat
  also whenever neither O_CREAT nor O_TMPFILE is given, where the mode is not
  read); openat2 takes its mode in a struct seccomp cannot read, so it fails
  with ENOSYS, as on an older kernel, and libc's callers fall back;
* CAP_SETFCAP is dropped (setting file capabilities needs it).

Only containers with a writable bind whose root is the host's root get this:
elsewhere setuid files stay possible in the container's own filesystem (a
package that installs sudo).  `--security-opt seccomp=unconfined` or
`--privileged` turns it off with the rest of the filter, as the user's choice.
"""

from __future__ import annotations

import copy

from . import guards

SETID = 0o6000  # S_ISUID | S_ISGID
O_CREAT, O_TMPFILE = 0o100, 0o20000000  # (O_TMPFILE without O_DIRECTORY's bit: either bit set reads a mode)
ENOSYS = 38
# syscall -> index of its mode argument
MODE_ARG = {"chmod": 1, "fchmod": 1, "fchmodat": 2, "fchmodat2": 2, "creat": 1, "mknod": 1, "mknodat": 2,
            "open": 2, "openat": 3}
FLAGS_ARG = {"open": 1, "openat": 2}
CAP_SETFCAP = 31


def needed(spec, host_root: bool) -> bool:
    """Does this container get the guard: a writable bind, and its root is the host's?"""
    if not host_root or guards.disabled("bind-setid") or spec.privileged:
        return False
    return any(not m.read_only for m in spec.mounts)


def host_root() -> bool:
    """Is this process root in the host's first user namespace (uid 0 mapped to uid 0, whole range)?"""
    import os

    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() == ["0", "0", "4294967295"]
    except OSError:
        return False


def _allow_if(names_args: list[tuple[str, int, int, int]]) -> list[dict]:
    return [{"names": [name], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": index, "value": mask, "valueTwo": value, "op": "SCMP_CMP_MASKED_EQ"}]}
            for name, index, mask, value in names_args]


def restrict(profile: dict) -> dict:
    """A copy of a Docker-format profile in which no call can give a file setuid/setgid bits."""
    profile = copy.deepcopy(profile)
    guarded = set(MODE_ARG) | {"openat2"}
    if profile.get("defaultAction") == "SCMP_ACT_ALLOW":  # a blocklist: add the refusals
        rules = [{"names": [name], "action": "SCMP_ACT_ERRNO",
                  "args": [{"index": MODE_ARG[name], "value": bit, "valueTwo": bit, "op": "SCMP_CMP_MASKED_EQ"}]}
                 for name in MODE_ARG for bit in (0o4000, 0o2000)]
        profile["syscalls"] = list(profile.get("syscalls") or []) + rules + [
            {"names": ["openat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}]
        return profile
    kept, allowed = [], set()  # allowed: the guarded calls the profile allowed (only those come back)
    for rule in profile.get("syscalls") or []:
        names = rule.get("names") or ([rule["name"]] if "name" in rule else [])
        if rule.get("action") == "SCMP_ACT_ALLOW" and guarded & set(names):
            allowed |= guarded & set(names)
            rest = [n for n in names if n not in guarded]
            if not rest:
                continue
            rule = dict(rule, names=rest)
            rule.pop("name", None)
        kept.append(rule)
    kept += _allow_if([(name, index, SETID, 0) for name, index in MODE_ARG.items() if name in allowed])
    kept += _allow_if([(name, index, O_CREAT | O_TMPFILE, 0) for name, index in FLAGS_ARG.items() if name in allowed])
    if "openat2" in allowed:
        kept.append({"names": ["openat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    profile["syscalls"] = kept
    return profile
