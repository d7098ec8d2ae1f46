"""Layer files keep their owners in a rootless multi-id lab (and can be removed again).

An unprivileged user unpacks layers as itself: every file is the user's, root
inside a container.  Where /etc/subuid gives the user a range (rootless-multi-id),
containers map ids 1..N to it, so an image's `node` or `postgres` files should be
theirs inside too.  After unpacking, while the layer is still in tmp/, the owners
the tar named are set in a child that made a user namespace with the same map as
the containers' (newuidmap/newgidmap: 0 -> the user, 1.. -> the range) and is
root there: chown(2) to a mapped id needs CAP_CHOWN in a namespace that maps both
the file's owner and the new one (capabilities(7)).  setuid and setgid bits,
which chown clears, are set again.  Files owned that way are no longer the user's
to delete on the host, so removing a layer goes through such a child too.

Each path is walked one component at a time with O_NOFOLLOW, as the unpacker
does: a later entry of the layer may have replaced a directory by a symlink.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat

from .. import linux


def mapping():
    """The rootless multi-id UserNs of this process, or None (root, single-id, no subuids)."""
    if os.geteuid() == 0:
        return None
    from ..rootless import for_this_process

    userns = for_this_process()
    return userns if userns is not None and userns.multi else None


def apply(root: str, entries: list[tuple[tuple[str, ...], int, int, int]], userns) -> None:
    """chown each (parts, uid, gid, mode) below root inside a mapped user namespace."""
    _in_userns(userns, _chown_all, root, entries)


def remove(path: str) -> None:
    """rmtree, through a mapped user namespace when files of other mapped ids block it."""
    try:
        shutil.rmtree(path)
        return
    except FileNotFoundError:
        return
    except PermissionError:
        userns = mapping()
        if userns is None:
            raise
    _in_userns(userns, shutil.rmtree, path)


def _chown_all(root: str, entries) -> None:
    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for parts, uid, gid, mode in entries:
            parent = _walk(top, parts[:-1])
            if parent < 0:
                continue  # replaced by a later entry of the layer
            try:
                os.chown(parts[-1], uid, gid, dir_fd=parent, follow_symlinks=False)
                st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    os.chmod(parts[-1], mode, dir_fd=parent)  # chown cleared setuid/setgid
            except FileNotFoundError:
                pass
            finally:
                if parent != top:
                    os.close(parent)
    finally:
        os.close(top)


def _walk(top: int, parts) -> int:
    fd = top
    for part in parts:
        try:
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        except OSError as e:
            if fd != top:
                os.close(fd)
            if e.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                return -1
            raise
        if fd != top:
            os.close(fd)
        fd = nfd
    return fd


def _in_userns(userns, fn, *args) -> None:
    """fork; the child unshares a user namespace, waits for our newuidmap, becomes root
    there and runs fn(*args); its error comes back as one JSON line."""
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(go_w)
            os.close(ready_r)
            os.close(err_r)
            linux.unshare(linux.CLONE_NEWUSER)
            os.write(ready_w, b"x")
            if os.read(go_r, 1) != b"x":
                os._exit(1)
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
            fn(*args)
            code = 0
        except BaseException as e:  # noqa: BLE001
            os.write(err_w, json.dumps({"errno": getattr(e, "errno", None), "message": str(e)}).encode())
        finally:
            os._exit(code)
    for fd in (ready_w, go_r, err_w):
        os.close(fd)
    try:
        if os.read(ready_r, 1) == b"x":
            try:
                userns.map_from_parent(pid)
            except BaseException:
                os.close(go_w)
                go_w = -1
                raise
            os.write(go_w, b"x")
    finally:
        if go_w >= 0:
            os.close(go_w)
        os.close(ready_r)
        _, status = os.waitpid(pid, 0)
        error = os.read(err_r, 65536)
        os.close(err_r)
    if status != 0:
        detail = json.loads(error) if error else {"errno": None, "message": f"exit status {status}"}
        raise OSError(detail.get("errno") or errno.EIO,
                      f"in the lab's user namespace: {detail.get('message')}")
