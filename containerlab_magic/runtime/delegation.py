"""Which cgroups this process may write: root's hierarchy, a delegated v2 subtree, or
v1 directories the user owns.

cgroups(7): making a child group needs write permission on the parent directory;
moving a process needs write permission on the target's cgroup.procs, and on v2
also on the cgroup.procs of the common ancestor of source and target (the
"Delegation Containment" rule of cgroup-v2.rst).  That is why an unprivileged
user gets v2 limits only where systemd delegated a subtree (`Delegate=yes`: the
user's session lives in a group the user owns).  v1 delegates nothing by
default; root can make and chown one directory per controller for a user (the
runc/BenchExec way; the OCI runtime-spec discourages chowning on v1).  A pod's
/sys/fs/cgroup is usually mounted read-only: every write fails with EROFS.

This module only looks and makes (then removes) one empty probe group in a
directory the user owns; it never moves a process.
"""

from __future__ import annotations

import errno
import os
import pwd
from dataclasses import dataclass

from .cgroups.detect import CGROUP_ROOT, Setup, detect
from .cgroups.v2.subtree import find_base

V1_LIMITS = ("memory", "pids", "cpu")


@dataclass(frozen=True)
class Access:
    ok: bool  # the lab can make groups somewhere
    version: int | None  # 1 or 2: the hierarchy it would use
    dirs: tuple[str, ...] = ()  # where the lab may make its groups
    controllers: tuple[str, ...] = ()  # controllers available there (v2: none on a hybrid host)
    errno: int | None = None
    detail: str = ""


def probe(root: str = CGROUP_ROOT) -> Access:
    setup = detect(root)
    if setup.mode is None:
        return Access(False, None, errno=errno.ENOENT, detail=f"no cgroup filesystem is mounted at {root}")
    if os.geteuid() == 0:
        return _as_root(setup)
    if setup.mode == "unified":
        return _v2_user(setup.unified_mount, setup.own_v2_path)
    v1 = _v1_user(setup)
    if v1.ok or not setup.unified_mount:
        return v1
    v2 = _v2_user(setup.unified_mount, setup.own_v2_path)
    return v2 if v2.ok else v1


def _as_root(setup: Setup) -> Access:
    if setup.mode == "unified":
        base, how = find_base(setup.unified_mount, setup.own_v2_path)
        if base is None:
            return Access(False, 2, errno=_write_errno(setup.unified_mount), detail=how)
        return Access(True, 2, (base,), _controllers(base), detail=how)
    usable = {c: m for c, m in setup.v1_mounts.items() if c in V1_LIMITS and _write_errno(m) is None}
    if not usable:
        mount = next(iter(setup.v1_mounts.values()), CGROUP_ROOT)
        return Access(False, 1, errno=_write_errno(mount), detail=f"{mount} is not writable")
    return Access(True, 1, tuple(sorted(set(usable.values()))), tuple(sorted(usable)),
                  detail="root: v1 " + ", ".join(sorted(usable)))


def _write_errno(path: str) -> int | None:
    """EROFS or EACCES when path cannot be written; None when it can (access(2), no write)."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return errno.EROFS
    except OSError as e:
        return e.errno
    return None if os.access(path, os.W_OK) else errno.EACCES


def _try_group(parent: str) -> int | None:
    """Make and remove one empty child group: the only honest test of delegation."""
    probe_dir = os.path.join(parent, f"clab-probe-{os.getpid()}")
    try:
        os.mkdir(probe_dir)
    except OSError as e:
        return e.errno
    os.rmdir(probe_dir)
    return None


def _controllers(group: str) -> tuple[str, ...]:
    try:
        with open(os.path.join(group, "cgroup.controllers")) as f:
            return tuple(sorted(f.read().split()))
    except OSError:
        return ()


def _v2_user(mount: str, own_path: str) -> Access:
    own = os.path.normpath(mount + "/" + own_path)
    top = _owned_top(mount, own)
    if top is None:
        err = _try_group(own) or errno.EACCES
        return Access(False, 2, errno=err, detail=f"{own}: {os.strerror(err)} (no subtree is delegated to uid "
                                                  f"{os.getuid()})")
    err = _try_group(top)
    if err:
        return Access(False, 2, errno=err, detail=f"{top}: {os.strerror(err)}")
    controllers = _controllers(top)
    return Access(True, 2, (top,), controllers,
                  detail=f"delegated v2 subtree {top}" + (f": {' '.join(controllers)}" if controllers
                                                          else " (no controllers: kill and freeze only)"))


def _owned_top(mount: str, own: str) -> str | None:
    """The highest ancestor of our group that we own with a writable cgroup.procs."""
    found, group = None, own
    while group.startswith(mount) and len(group) >= len(mount):
        try:
            owned = os.stat(group).st_uid == os.getuid()
        except OSError:
            break
        if owned and os.access(os.path.join(group, "cgroup.procs"), os.W_OK):
            found = group
        if group == mount:
            break
        group = os.path.dirname(group)
    return found


def _own_v1_paths() -> dict[str, str]:
    """controller -> our group's path in its v1 hierarchy (/proc/self/cgroup)."""
    paths = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            for name in names.split(","):
                if name:
                    paths[name] = path
    return paths


def _v1_user(setup: Setup) -> Access:
    uid, own = os.getuid(), _own_v1_paths()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    found, first_error = {}, None
    for controller in V1_LIMITS:
        mount = setup.v1_mounts.get(controller)
        if not mount:
            continue
        for group in dict.fromkeys((os.path.join(mount, "containerlab", f"user-{uid}"),  # (rung_fixes' recipe)
                                    os.path.normpath(mount + "/" + own.get(controller, "/")),
                                    os.path.join(mount, user), os.path.join(mount, str(uid)))):
            try:
                if os.stat(group).st_uid != uid:
                    continue
            except OSError:
                continue
            err = _try_group(group)
            if err is None:
                found[controller] = group
                break
            first_error = first_error or err
        if controller not in found and first_error is None:
            first_error = _try_group(mount) or errno.EACCES
    if not found:
        err = first_error or errno.ENOENT
        return Access(False, 1, errno=err, detail=f"no v1 group owned by uid {uid} ({os.strerror(err)})")
    return Access(True, 1, tuple(found[c] for c in sorted(found)), tuple(sorted(found)),
                  detail="v1 groups owned by " + user + ": " + ", ".join(f"{c} {found[c]}" for c in sorted(found)))
