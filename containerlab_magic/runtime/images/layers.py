"""Unpacking one image layer (a tar, maybe gzip or zstd) into its own directory.

A layer is a tar of the changes one build step made (OCI image-spec
layer.md).  Deletions are marked by *whiteouts*: an empty file `.wh.NAME`
hides NAME of the layers below, and `.wh..wh..opq` in a directory hides all
of its lower contents.  Each layer here becomes one overlayfs lowerdir, so
whiteouts are converted to overlay's own format (Documentation/filesystems/
overlayfs.rst): a character device 0/0 named NAME, and the xattr
`trusted.overlay.opaque=y` on the directory (`user.overlay.opaque=y` when
unpacked without root, for an overlay mounted with `userxattr` in a user
namespace; mknod of 0/0 is allowed there).

A layer comes from the network and is hostile until proven otherwise.
Python's tarfile filters do not fit (the 'data' filter refuses the absolute
symlinks and whiteouts every image has; 'tar' strips /tmp's sticky bit and
follows hard links out of the tree), so this is our own unpacker:

- Every path is walked one component at a time with openat(2) and
  O_NOFOLLOW relative to directory fds: a symlink planted by the layer is
  never followed, so nothing is written outside the layer's directory.
  A write through a symlink is refused; `..` is refused; a leading `/` is
  dropped (it means the layer's root).
- Hard links must name a file already in this layer, by the same rules.
- Devices are skipped (the runtime gives each container its own /dev);
  fifos are made; an existing entry is replaced by a new one of another
  kind (a file over a directory and the reverse), as docker does.
- Owners and setuid/setgid bits: kept when unpacking as root, or as root of
  a user namespace that maps a range of ids (docker and podman keep them:
  su, passwd and ping need them; containers run with no_new_privs on top).
  Otherwise (no root, or a user namespace of one id) files belong to the
  user and setid bits are stripped: on the host any other user could run
  the file as them.  Overlay's xattrs are trusted.* only for root of the
  initial user namespace (host_mode() reads /proc/self/uid_map).
- Only `security.capability` and `user.*` xattrs are applied (as root); a
  layer's own `trusted.overlay.*` would rewrite how overlayfs reads it.
- Limits on entry count, total size and one file's size stop tar bombs.
- A missing end-of-archive footer is tolerated (old umoci omits it).
The uncompressed stream's sha256 is its diff_id, checked by the caller.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass, field

from ..errors import ContainerError

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
ALLOWED_XATTRS = ("security.capability",)
CHUNK = 1 << 20
PATH_MAX = 4096  # limits.h: no syscall takes a longer path; a deeper tar is a bomb


class LayerError(ContainerError):
    """A layer is malformed or tries something unsafe; nothing of it is kept."""


@dataclass(frozen=True)
class LayerLimits:
    """Ceilings against tar bombs; the store's defaults fit real images (a Debian is ~7k entries)."""

    max_entries: int = 1_000_000
    max_total: int = 64 << 30  # uncompressed bytes of file content
    max_file: int = 16 << 30


@dataclass
class UnpackReport:
    entries: int = 0
    bytes: int = 0
    whiteouts: int = 0
    opaque_dirs: int = 0
    skipped_devices: list[str] = field(default_factory=list)
    stripped_setid: list[str] = field(default_factory=list)
    diff_id: str = ""
    userxattr: bool = False  # whiteouts as user.* xattrs: mount the overlay with `userxattr`
    # unpacked without owners: (path parts, uid, gid, mode) of what had others, for owners.py
    owners: list[tuple[tuple[str, ...], int, int, int]] = field(default_factory=list)


def host_mode() -> tuple[bool, bool]:
    """(keep owners, use trusted.* xattrs) for this process, from /proc/self/uid_map.

    Root of the initial user namespace: both.  Root of a user namespace mapping a
    range of ids (rootless multi-id): owners, but overlay's xattrs must be user.*.
    One mapped id, or no root at all: neither (files belong to the user).
    """
    if os.geteuid() != 0:
        return False, False
    try:
        with open("/proc/self/uid_map") as f:
            rows = [line.split() for line in f if line.strip()]
    except OSError:
        return True, True
    mapped = sum(int(row[2]) for row in rows)
    initial = rows == [["0", "0", "4294967295"]]
    return mapped > 1, initial


class HashingReader:
    """A file-like view of a stream that hashes what is read (the layer's diff_id)."""

    def __init__(self, raw):
        self.raw = raw
        self.sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n) if n is not None and n >= 0 else self.raw.read()
        self.sha.update(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def decompressed(fileobj):
    """The tar stream inside a blob, by its magic bytes (media types lie more often)."""
    head = fileobj.read(4)
    rest = _Prefixed(head, fileobj)
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=rest, mode="rb")
    if head == b"\x28\xb5\x2f\xfd":
        try:
            import zstandard
        except ImportError:
            raise LayerError("this layer is zstd-compressed: install the `zstandard` package") from None
        return zstandard.ZstdDecompressor().stream_reader(rest, read_across_frames=True)
    return rest


class _Footed:
    """After the real stream ends, the padding and end-of-archive blocks it lacked.

    Old umoci wrote layers without them (umoci#436); Go's reader accepts
    that, Python's tarfile does not.  The diff_id covers only the real bytes.
    """

    def __init__(self, raw):
        self.raw, self.pos, self.tail = raw, 0, None

    def read(self, n: int = -1) -> bytes:
        if self.tail is None:
            data = self.raw.read(n)
            self.pos += len(data)
            if data or n == 0:
                return data
            self.tail = b"\0" * (-self.pos % 512 + 1024)
        data, self.tail = self.tail[:n], self.tail[n:]
        return data


def _zstd_errors() -> tuple:
    try:
        import zstandard
        return (zstandard.ZstdError,)
    except ImportError:
        return ()


class _Prefixed:
    def __init__(self, head: bytes, raw):
        self.head, self.raw = head, raw

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n is None or n < 0:
                data, self.head = self.head + self.raw.read(), b""
                return data
            data, self.head = self.head[:n], self.head[n:]
            return data + (self.raw.read(n - len(data)) if n > len(data) else b"")
        return self.raw.read(n)


def clean_parts(name: str) -> list[str]:
    """Path components of a member name inside the layer; refuses `..` and paths past PATH_MAX."""
    if len(name) > PATH_MAX:
        raise LayerError(f"layer entry {name[:60]!r}... is a path of {len(name)} bytes, over {PATH_MAX}: refused")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"layer entry {name!r} climbs out of the layer with '..': the layer is refused")
    return parts


class Unpacker:
    """Writes one layer's entries below `dest`; one instance per layer."""

    def __init__(self, dest: str, limits: LayerLimits = LayerLimits(), as_root: bool | None = None):
        self.dest = dest
        self.limits = limits
        # owners: chown to the layer's ids (and keep setid bits); trusted: overlay's
        # trusted.* xattrs (root of the initial user namespace only).
        self.owners, self.trusted = host_mode() if as_root is None else (as_root, as_root)
        self.opaque_xattr = "trusted.overlay.opaque" if self.trusted else "user.overlay.opaque"
        self.report = UnpackReport(userxattr=not self.trusted)
        self._dirs: dict[tuple[str, ...], tarfile.TarInfo] = {}
        self.root_fd = -1

    def unpack(self, blob) -> UnpackReport:
        """Unpack from a (compressed) blob file object; returns what was done."""
        stream = HashingReader(decompressed(blob))
        self.root_fd = os.open(self.dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            try:
                with tarfile.open(fileobj=_Footed(stream), mode="r|", bufsize=CHUNK) as tar:
                    for member in tar:
                        try:
                            self._entry(tar, member)
                        except OSError as e:
                            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                                raise  # a full disk, not a bad layer (the pull says so: blobs.full_disk)
                            raise LayerError(f"the layer's entry {member.name[:80]!r} cannot be made: "
                                             f"{e.strerror or e}") from None
                stream.drain()  # the footer and padding count in the diff_id
            except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) + _zstd_errors() as e:
                raise LayerError(f"the layer is not a valid tar archive: {e}") from None
            self._finish_dirs()
        finally:
            os.close(self.root_fd)
        self.report.diff_id = "sha256:" + stream.sha.hexdigest()
        return self.report

    # -- one entry ---------------------------------------------------------

    def _entry(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        self.report.entries += 1
        if self.report.entries > self.limits.max_entries:
            raise LayerError(f"the layer has more than {self.limits.max_entries} entries (a tar bomb?): refused")
        parts = clean_parts(member.name)
        if not parts:
            return  # "/" or "./": the layer's root itself
        base = parts[-1]
        if base.startswith(WHITEOUT):
            self._whiteout(parts)
            return
        if member.ischr() and member.devmajor == 0 and member.devminor == 0:
            self._whiteout(parts[:-1] + [WHITEOUT + base])  # already in overlay's format
            return
        if member.ischr() or member.isblk():
            self.report.skipped_devices.append("/".join(parts))
            return
        parent = self._open_dir(parts[:-1], create=True, what=member.name)
        try:
            self._replace(parent, base, member.isdir())
            if member.isdir():
                self._mkdir(parent, base)
                self._dirs[tuple(parts)] = member
            elif member.isreg():
                self._file(tar, member, parent, base, parts)
            elif member.issym():
                os.symlink(member.linkname, base, dir_fd=parent)
                self._owner(parent, base, member)
                if not self.owners and (member.uid or member.gid):
                    self.report.owners.append((tuple(parts), member.uid, member.gid, 0o777))
                os.utime(base, ns=(int(member.mtime * 10**9),) * 2, dir_fd=parent, follow_symlinks=False)
            elif member.islnk():
                self._hardlink(member, parent, base)
            elif member.isfifo():
                os.mkfifo(base, 0o600, dir_fd=parent)
                self._meta(parent, base, member, parts)
            else:
                raise LayerError(f"layer entry {member.name!r} has an unknown type {member.type!r}: refused")
        finally:
            os.close(parent)

    def _file(self, tar, member, parent: int, base: str, parts: list[str]) -> None:
        if member.size > self.limits.max_file:
            raise LayerError(f"layer file {member.name!r} is {member.size} bytes, over the limit of "
                             f"{self.limits.max_file}: refused")
        self.report.bytes += member.size
        if self.report.bytes > self.limits.max_total:
            raise LayerError(f"the layer unpacks to more than {self.limits.max_total} bytes: refused")
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=parent)
        try:
            src = tar.extractfile(member)
            while chunk := src.read(CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        self._meta(parent, base, member, parts)

    def _hardlink(self, member, parent: int, base: str) -> None:
        target = clean_parts(member.linkname)
        if not target:
            raise LayerError(f"hard link {member.name!r} points at the layer's root: refused")
        try:
            tparent = self._open_dir(target[:-1], create=False, what=member.linkname)
        except FileNotFoundError:
            tparent = -1
        try:
            if tparent < 0:
                raise FileNotFoundError
            st = os.stat(target[-1], dir_fd=tparent, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                raise LayerError(f"hard link {member.name!r} points at a directory: refused")
            os.link(target[-1], base, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            raise LayerError(f"hard link {member.name!r} -> {member.linkname!r}: the target is not in this "
                             "layer: refused") from None
        finally:
            if tparent >= 0:
                os.close(tparent)

    def _whiteout(self, parts: list[str]) -> None:
        try:
            parent = self._open_dir(parts[:-1], create=True, what="/".join(parts))
        except LayerError:
            # umoci writes `keep/.wh.k` under a file that replaced a directory: nothing to hide.
            return
        try:
            if parts[-1] == OPAQUE:
                os.setxattr(parent, self.opaque_xattr, b"y")
                self.report.opaque_dirs += 1
                return
            name = parts[-1][len(WHITEOUT):]
            if not name or name in (".", ".."):
                raise LayerError(f"whiteout {'/'.join(parts)!r} names nothing: refused")
            self._replace(parent, name, False)
            os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)
            self.report.whiteouts += 1
        finally:
            os.close(parent)

    # -- paths, never through a symlink -----------------------------------

    def _open_dir(self, parts: list[str], create: bool, what: str) -> int:
        fd = os.dup(self.root_fd)
        try:
            for i, part in enumerate(parts):
                try:
                    nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    self._mkdir(fd, part, 0o755)  # a parent the layer did not list: docker's default
                    nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                except OSError as e:
                    if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    here = "/".join(parts[: i + 1])
                    kind = "a symlink" if os.path.islink(os.path.join(self.dest, here)) else "not a directory"
                    raise LayerError(f"layer entry {what!r} would be written through {here!r}, which is "
                                     f"{kind}: refused") from None
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _mkdir(self, parent: int, name: str, mode: int = 0o700) -> None:
        # A listed directory gets its own mode at the end: it may forbid our own writes.
        try:
            os.mkdir(name, mode, dir_fd=parent)
        except FileExistsError:
            return
        os.chmod(name, mode, dir_fd=parent)  # not the umask's

    def _replace(self, parent: int, name: str, keep_dir: bool) -> None:
        """Make room for `name`: a directory stays for a directory; anything else goes."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if not keep_dir:
                shutil.rmtree(name, dir_fd=parent)  # fd-based: immune to symlink races
        else:
            os.unlink(name, dir_fd=parent)

    # -- metadata ----------------------------------------------------------

    def _owner(self, parent: int, name: str, member) -> None:
        if not self.owners:
            return
        try:
            os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            raise LayerError(f"layer entry {member.name!r} belongs to {member.uid}:{member.gid}, which this user "
                             "namespace does not map: give the user more ids in /etc/subuid and /etc/subgid") from None

    def _meta(self, parent: int, name: str, member, parts: list[str]) -> None:
        self._owner(parent, name, member)
        mode = member.mode & 0o7777
        if not self.owners and (member.uid or member.gid or mode & (stat.S_ISUID | stat.S_ISGID)):
            self.report.owners.append((tuple(parts), member.uid, member.gid, mode))  # (owners.py may set them)
        if mode & (stat.S_ISUID | stat.S_ISGID) and not self.owners and not member.isdir():
            mode &= ~(stat.S_ISUID | stat.S_ISGID)
            self.report.stripped_setid.append("/".join(parts))
        os.chmod(name, mode, dir_fd=parent)  # after chown, which clears setuid
        if self.owners:
            self._xattrs(parent, name, member)
        os.utime(name, ns=(int(member.mtime * 10**9),) * 2, dir_fd=parent, follow_symlinks=False)

    def _xattrs(self, parent: int, name: str, member) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            attr = key[len("SCHILY.xattr."):]
            if attr in ALLOWED_XATTRS or (attr.startswith("user.") and not attr.startswith("user.overlay.")):
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
                try:
                    os.setxattr(fd, attr, value.encode("utf-8", "surrogateescape"))
                except PermissionError:
                    pass  # file capabilities need CAP_SETFCAP: the file still runs, without them
                finally:
                    os.close(fd)

    def _finish_dirs(self) -> None:
        # Deepest first, so a parent's mtime is set after its children changed it.
        for parts in sorted(self._dirs, key=len, reverse=True):
            member = self._dirs[parts]
            try:
                parent = self._open_dir(list(parts[:-1]), create=False, what=member.name)
            except (FileNotFoundError, LayerError):
                continue  # replaced by a later entry
            try:
                if stat.S_ISDIR(os.stat(parts[-1], dir_fd=parent, follow_symlinks=False).st_mode):
                    self._meta(parent, parts[-1], member, list(parts))
            except FileNotFoundError:
                pass
            finally:
                os.close(parent)


def unpack(blob, dest: str, limits: LayerLimits = LayerLimits(), as_root: bool | None = None) -> UnpackReport:
    """Unpack the layer read from `blob` into the existing empty directory `dest`."""
    return Unpacker(dest, limits, as_root).unpack(blob)
