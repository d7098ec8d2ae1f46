"""`cp SRC DST`: files between the host and a running container, both ways.

docker's rules: a file onto a missing path is saved under that name; onto an
existing directory, inside it under its own name; a directory is copied whole
(into DST when DST exists, as DST when it does not).  Symlinks are copied as
links, never followed at the last component; set-uid and set-gid bits are
dropped, so a container cannot hand the host a set-uid program.  Devices,
sockets and FIFOs are skipped and counted.

Both sides are opened through inroot.Root, an fd-based walk that resolves
every path inside its root (see inroot.py), so neither `..` nor a symlink in
the container can reach outside it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from ..parsers import parse_container_path
from ..runtime.errors import Conflict, NotFound, RuntimeFailure, SpecError
from .inroot import Root

CHUNK = 1 << 20


@dataclass
class CopyResult:
    files: int = 0
    directories: int = 0
    links: int = 0
    bytes: int = 0
    skipped: int = 0  # devices, sockets, FIFOs


def _root(engine, name: str | None) -> Root:
    if name is None:
        return Root("/", "the host")
    state = engine.inspect(name)
    if state.get("status") != "running":
        raise Conflict(f"cp: container {name} is {state.get('status')}: cp needs a running container")
    try:
        return Root(f"/proc/{state['pid']}/root", f"container {name}")
    except (FileNotFoundError, ProcessLookupError):
        raise Conflict(f"cp: container {name} has just ended: cp needs a running container") from None


def cp(engine, source: str, destination: str) -> CopyResult:
    """Copy SRC to DST; exactly one of them is NAME:PATH."""
    src_name, src_path = parse_container_path(source)
    dst_name, dst_path = parse_container_path(destination)
    if (src_name is None) == (dst_name is None):
        raise SpecError("cp: copy between the host and a container: write cp NAME:PATH HOSTPATH "
                        "or cp HOSTPATH NAME:PATH")
    if src_name is None:
        src_path = _absolute(src_path)
    else:
        dst_path = _absolute(dst_path)
    with _root(engine, src_name) as src_root, _root(engine, dst_name) as dst_root:
        try:
            return _copy(src_root, src_path, dst_root, dst_path)
        except FileNotFoundError as e:
            raise NotFound(f"cp: no such file or directory: {e.filename or source}") from None
        except OSError as e:
            raise RuntimeFailure(f"cp: {e.filename or destination}: {e.strerror}") from None


def _absolute(path: str) -> str:
    """A host path made absolute, keeping a trailing / (it says: a directory)."""
    return os.path.abspath(os.path.expanduser(path)) + ("/" if path.endswith("/") else "")


def _copy(src_root: Root, src_path: str, dst_root: Root, dst_path: str) -> CopyResult:
    result = CopyResult()
    sdir, sname = src_root.parent(src_path)
    try:
        try:
            os.stat(sname, dir_fd=sdir, follow_symlinks=False)
        except FileNotFoundError:
            raise NotFound(f"cp: no such file or directory in {src_root.label}: {src_path}") from None
        tdir, tname = _target(dst_root, dst_path, sname)
        try:
            _entry(sdir, sname, tdir, tname, result)
        finally:
            os.close(tdir)
    finally:
        os.close(sdir)
    return result


def _target(root: Root, path: str, name: str) -> tuple[int, str]:
    """Where the copy goes: inside DST if it is a directory, else DST itself."""
    try:
        return root.directory(path), name
    except FileNotFoundError:
        if path.endswith("/"):
            raise NotFound(f"cp: directory {path} does not exist in {root.label}") from None
    except NotADirectoryError:
        pass  # an existing file: replaced
    try:
        return root.parent(path)
    except FileNotFoundError:
        raise NotFound(f"cp: the directory holding {path} does not exist in {root.label}") from None


def _replace(tdir: int, tname: str, is_dir: bool) -> None:
    """Clear the way for a new entry: an old file or link goes; an old directory stays for a directory."""
    try:
        st = os.stat(tname, dir_fd=tdir, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if not is_dir:
            raise SpecError(f"cp: cannot overwrite directory {tname!r} with a file")
        return
    if is_dir:
        raise SpecError(f"cp: cannot copy a directory onto the file {tname!r}")
    os.unlink(tname, dir_fd=tdir)


def _entry(sdir: int, sname: str, tdir: int, tname: str, result: CopyResult) -> None:
    st = os.stat(sname, dir_fd=sdir, follow_symlinks=False)
    mode = stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID)
    if stat.S_ISLNK(st.st_mode):
        _replace(tdir, tname, False)
        os.symlink(os.readlink(sname, dir_fd=sdir), tname, dir_fd=tdir)
        result.links += 1
    elif stat.S_ISREG(st.st_mode):
        _replace(tdir, tname, False)
        _file(sdir, sname, tdir, tname, mode, st, result)
    elif stat.S_ISDIR(st.st_mode):
        _replace(tdir, tname, True)
        _directory(sdir, sname, tdir, tname, mode, result)
    else:
        result.skipped += 1


def _file(sdir: int, sname: str, tdir: int, tname: str, mode: int, st, result: CopyResult) -> None:
    flags = os.O_CLOEXEC | os.O_NOFOLLOW
    # O_NONBLOCK: a FIFO swapped in after the stat must not hang the copy; it is then skipped
    source = os.open(sname, os.O_RDONLY | os.O_NONBLOCK | flags, dir_fd=sdir)
    try:
        if not stat.S_ISREG(os.fstat(source).st_mode):
            result.skipped += 1
            return
        target = os.open(tname, os.O_WRONLY | os.O_CREAT | os.O_EXCL | flags, 0o600, dir_fd=tdir)
        try:
            while chunk := os.read(source, CHUNK):
                view = memoryview(chunk)
                while view:  # a write may take less than it is given
                    view = view[os.write(target, view):]
                result.bytes += len(chunk)
            os.fchmod(target, mode)
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(target)
    finally:
        os.close(source)
    result.files += 1


def _directory(sdir: int, sname: str, tdir: int, tname: str, mode: int, result: CopyResult) -> None:
    try:
        os.mkdir(tname, 0o700, dir_fd=tdir)
    except FileExistsError:
        pass  # merged into, as docker does
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    source = os.open(sname, flags, dir_fd=sdir)
    try:
        target = os.open(tname, flags, dir_fd=tdir)
        try:
            for name in sorted(os.listdir(source)):
                _entry(source, name, target, name, result)
            os.fchmod(target, mode)
        finally:
            os.close(target)
    finally:
        os.close(source)
    result.directories += 1
