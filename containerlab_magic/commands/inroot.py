"""Paths inside a running container, opened from the host without leaving its root.

/proc/PID/root is the container's root directory (see proc(5)).  But when the
kernel walks /proc/PID/root/a/b, an absolute symlink met on the way is
resolved against the *caller's* root: a container that makes /tmp/x -> /etc
would have the host's /etc read or written.  So paths are walked here one
component at a time, each opened with O_PATH|O_NOFOLLOW relative to the
directory before it (openat(2)): a symlink is read and resolved against the
container's root (an absolute target restarts at that root, as it would for
the container's own processes), and `..` above the root is refused.  What is
opened is an fd, so a symlink swapped in after the check is never followed.

The host side of `cp` uses the same walker with root "/", so both directions
share one code path.
"""

from __future__ import annotations

import errno
import os
import stat

from ..runtime.errors import SpecError

MAX_SYMLINKS = 40  # as the kernel's path walk (ELOOP after 40 links)


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


class Root:
    """A directory treated as / for every path opened through it."""

    def __init__(self, path: str, label: str):
        self.label = label  # how errors name it: "container web" or "the host"
        self.fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "Root":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def directory(self, path: str) -> int:
        """An O_PATH fd of the directory `path` names, every symlink resolved inside the root.
        Raises FileNotFoundError / NotADirectoryError as the kernel would."""
        stack = [os.dup(self.fd)]
        queue = _parts(path)
        hops = 0
        try:
            while queue:
                part = queue.pop(0)
                if part == "..":
                    if len(stack) == 1:
                        raise SpecError(f"cp: {path!r} leads out of {self.label}'s root: "
                                        "give a path inside it, without '..' above /")
                    os.close(stack.pop())
                    continue
                fd = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
                mode = os.fstat(fd).st_mode
                if stat.S_ISLNK(mode):
                    os.close(fd)
                    hops += 1
                    if hops > MAX_SYMLINKS:
                        raise OSError(errno.ELOOP, "too many symbolic links", path)
                    target = os.readlink(part, dir_fd=stack[-1])
                    if target.startswith("/"):
                        for extra in stack[1:]:
                            os.close(extra)
                        del stack[1:]
                    queue = _parts(target) + queue
                elif stat.S_ISDIR(mode):
                    stack.append(fd)
                else:
                    os.close(fd)
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
            result = stack.pop()
            return result
        finally:
            for fd in stack:
                os.close(fd)

    def parent(self, path: str) -> tuple[int, str]:
        """(O_PATH fd of the directory holding path's last component, that component).
        The user's path is cleaned first (a/b/.. is a, as docker's cp reads it); the
        last component itself is not followed: it may be a symlink, or not exist."""
        parts: list[str] = []
        for part in _parts(path):
            if part != "..":
                parts.append(part)
            elif parts:
                parts.pop()
            else:
                raise SpecError(f"cp: {path!r} leads out of {self.label}'s root: "
                                "give a path inside it, without '..' above /")
        if not parts:
            raise SpecError(f"cp: give a path below / in {self.label}, not its root itself")
        return self.directory("/".join(parts[:-1])), parts[-1]
