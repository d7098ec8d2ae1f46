"""A running container's changes against its image, as a directory of overlay-style changes.

A container's writable layer is a tmpfs mounted in its own mount namespace
before pivot_root(2), so the host cannot reach its upperdir by path.  What
the host can reach is the merged root, /proc/PID/root (proc(5)).  Like
docker's "naive diff" driver (used for graph drivers without a native diff),
the changes are found by comparing that merged tree with the image's layers:
an entry new or different in type, mode, owner, size, mtime or link target
is copied; an entry of the image that is gone becomes a whiteout (a char
device 0/0, overlay's form, which commit.py writes as `.wh.NAME`).  Other
filesystems mounted in the container (/proc, /dev, /sys, /tmp, the runtime's
/etc/hosts binds, volumes: its mountinfo) are left out.

The result feeds commit.commit (a layer) and export (a whole tree).
"""

from __future__ import annotations

import os
import shutil
import stat

SKIP = {"proc", "sys", "dev"}
RUNTIME_FILES = {"etc/hosts", "etc/hostname", "etc/resolv.conf"}  # made by the runtime, as docker leaves out


def image_view(layers: tuple[str, ...]) -> dict[str, str]:
    """rel path -> the lowerdir entry that shows there (layers given top first)."""
    view: dict[str, str] = {}
    for layer in layers[::-1]:  # bottom first: an upper layer's entry replaces a lower one
        for dirpath, dirnames, filenames in os.walk(layer):
            rel = os.path.relpath(dirpath, layer)
            if rel != "." and _opaque(dirpath):
                prefix = rel + "/"
                for key in [k for k in view if k.startswith(prefix)]:
                    del view[key]
            for entry in dirnames + filenames:
                arc = entry if rel == "." else f"{rel}/{entry}"
                full = os.path.join(dirpath, entry)
                st = os.lstat(full)
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    for key in [k for k in view if k == arc or k.startswith(arc + "/")]:
                        del view[key]
                else:
                    view[arc] = full
    return view


def _opaque(path: str) -> bool:
    for name in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            pass
    return False


def mount_points(root: str) -> set[str]:
    """The container's mount points other than its root, relative to it: /proc/PID/mountinfo
    (proc(5)) lists them as seen from the process's root.  (st_dev cannot tell: overlayfs
    reports a file's own layer's device when the layers are on different filesystems.)"""
    pid = root.rstrip("/").split("/")[-2]
    points = set()
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point != "/":
                points.add(point.lstrip("/"))
    return points


def merged_entries(root: str):
    """(rel path, lstat) of a container's root filesystem (root: /proc/PID/root), not its other mounts."""
    skip = mount_points(root) | RUNTIME_FILES | SKIP
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        keep = []
        for entry in sorted(dirnames + filenames):
            arc = entry if rel == "." else f"{rel}/{entry}"
            if arc in skip:
                continue
            try:
                st = os.lstat(os.path.join(dirpath, entry))
            except FileNotFoundError:  # the container removed it as we walked
                continue
            if stat.S_ISDIR(st.st_mode):
                keep.append(entry)
            yield arc, st
        dirnames[:] = [d for d in dirnames if d in keep]


def _same(a: os.stat_result, b: os.stat_result, a_path: str, b_path: str) -> bool:
    if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode) or a.st_mode != b.st_mode:
        return False
    if (a.st_uid, a.st_gid) != (b.st_uid, b.st_gid):
        return False
    if stat.S_ISDIR(a.st_mode):
        return True  # a directory's own changes show as entries below it
    if stat.S_ISLNK(a.st_mode):
        return os.readlink(a_path) == os.readlink(b_path)
    return a.st_size == b.st_size and int(a.st_mtime) == int(b.st_mtime)


def changes(root: str, layers: tuple[str, ...], dest: str) -> int:
    """Write into `dest` what differs between the merged `root` and the image `layers`
    (overlay's form: copies and 0/0 whiteouts); returns the number of changed entries."""
    lower = image_view(layers)
    mounted = mount_points(root) | RUNTIME_FILES | SKIP
    seen, count = set(), 0
    for arc, st in merged_entries(root):
        seen.add(arc)
        src = os.path.join(root, arc)
        old = lower.get(arc)
        if old is not None and _same(st, os.lstat(old), src, old):
            continue
        _copy(src, st, os.path.join(dest, arc), root, arc, dest)
        count += 1
    for arc in sorted(lower):
        if arc in seen or any(arc == m or arc.startswith(m + "/") for m in mounted):
            continue  # there, or hidden by a mount (not a deletion)
        parent = arc.rpartition("/")[0]
        if parent and parent not in seen:
            continue  # its parent is gone: one whiteout there covers it
        _parents(root, parent, dest)
        os.mknod(os.path.join(dest, arc), stat.S_IFCHR | 0o000, os.makedev(0, 0))
        count += 1
    return count


def _parents(root: str, rel: str, dest: str) -> None:
    """Make `rel`'s directories in dest with the modes and owners they have in root."""
    path = dest
    for part in [p for p in rel.split("/") if p]:
        path = os.path.join(path, part)
        if not os.path.isdir(path):
            st = os.lstat(os.path.join(root, os.path.relpath(path, dest)))
            os.mkdir(path)
            _meta(path, st)


def _meta(path: str, st: os.stat_result) -> None:
    os.lchown(path, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy(src: str, st: os.stat_result, target: str, root: str, arc: str, dest: str) -> None:
    _parents(root, arc.rpartition("/")[0], dest)
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        if not os.path.isdir(target):
            os.mkdir(target)
    elif stat.S_ISLNK(mode):
        os.symlink(os.readlink(src), target)
    elif stat.S_ISREG(mode):
        shutil.copyfile(src, target, follow_symlinks=False)
    elif stat.S_ISFIFO(mode):
        os.mkfifo(target)
    else:
        return  # devices and sockets are not image content
    _meta(target, st)
