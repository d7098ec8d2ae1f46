"""Reading and writing cgroup files, with errors that carry the path and the data.

A cgroup is a directory in a cgroup filesystem; its settings and figures are
small text files (see the kernel's Documentation/admin-guide/cgroup-v1/ and
cgroup-v2.rst).  Each write must be a single write(2) call, since the kernel
parses every call on its own, so `write` uses os.write, not a buffered file.
"""

from __future__ import annotations

import errno
import os
import time

from ..errors import RuntimeFailure


class CgroupFileError(RuntimeFailure):
    """A cgroup file could not be read or written: names the path, the data and the errno."""

    def __init__(self, action: str, path: str, err: OSError, data: str | None = None, hint: str = ""):
        self.path, self.data, self.errno = path, data, err.errno
        code = errno.errorcode.get(err.errno or 0, str(err.errno))
        what = f"{action} {data} to" if data is not None else action
        text = f"failed to {what} {path}: {code} ({os.strerror(err.errno or 0)})"
        super().__init__(text + (f"; {hint}" if hint else ""))


def write(path: str, data: str | int, hint: str = "") -> None:
    data = str(data)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)
    except OSError as err:
        raise CgroupFileError("write", path, err, data, hint) from None


def read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode()
    except OSError as err:
        raise CgroupFileError("read", path, err) from None


def read_opt(path: str) -> str | None:
    """The file's text, or None when it does not exist (feature absent on this kernel)."""
    try:
        with open(path, "rb") as f:
            return f.read().decode()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise CgroupFileError("read", path, err) from None


UNLIMITED_V1 = 1 << 62  # v1 reports "no limit" as PAGE_COUNTER_MAX * page size (~2**63)


def read_int(path: str) -> int | None:
    """A one-number file; None for 'max', for v1's huge 'unlimited', or when absent."""
    text = read_opt(path)
    if text is None:
        return None
    text = text.strip()
    if text in ("max", "-1", ""):
        return None
    value = int(text)
    return None if value >= UNLIMITED_V1 else value


def read_keyed(path: str) -> dict[str, int]:
    """A flat-keyed file ('key value' per line: cpu.stat, memory.events, ...); {} when absent."""
    text = read_opt(path)
    result: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            result[key] = int(value)
        except ValueError:
            pass
    return result


def procs(path: str) -> list[int]:
    """PIDs listed in a cgroup.procs file ([] when the group is gone)."""
    text = read_opt(path)
    return [int(p) for p in (text or "").split()]


def mkdir(path: str) -> bool:
    """Create a cgroup directory; False if it already existed."""
    try:
        os.mkdir(path)
        return True
    except FileExistsError:
        return False
    except OSError as err:
        raise CgroupFileError("create", path, err) from None


def rmdir(path: str, timeout: float = 2.0) -> None:
    """Remove a cgroup directory, retrying on EBUSY while its last processes exit."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as err:
            if err.errno != errno.EBUSY or time.monotonic() > deadline:
                left = procs(os.path.join(path, "cgroup.procs"))
                hint = f"processes still inside: {left}" if left else ""
                raise CgroupFileError("remove", path, err, hint=hint) from None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def poll(predicate, timeout: float) -> bool:
    """Poll `predicate` (cheap file reads) with a growing pause until true; False on timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


def wait_until(predicate, timeout: float, what: str, path: str) -> None:
    """Like poll, but a timeout raises, naming what did not happen."""
    if not poll(predicate, timeout):
        raise RuntimeFailure(f"timed out after {timeout:g} s waiting for {what} in {path}")


def parse_cpu_list(text: str) -> set[int]:
    """'0-3,6' -> {0, 1, 2, 3, 6} (the cpuset list format)."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus
