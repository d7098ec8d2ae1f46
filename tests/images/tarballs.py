"""Hand-made layer tarballs, evil ones included (Python's tarfile writes what we say)."""

from __future__ import annotations

import gzip
import io
import tarfile


def entry(name: str, kind: str = "file", data: bytes = b"", mode: int | None = None, uid: int = 0,
          gid: int = 0, link: str = "", dev: tuple[int, int] = (0, 0), mtime: int = 1_700_000_000,
          pax: dict | None = None) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.uid, info.gid, info.mtime = uid, gid, mtime
    types = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
             "hardlink": tarfile.LNKTYPE, "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE,
             "fifo": tarfile.FIFOTYPE}
    info.type = types[kind]
    info.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    info.linkname = link
    info.devmajor, info.devminor = dev
    if pax:
        info.pax_headers = dict(pax)
    if kind == "file":
        info.size = len(data)
        return info, data
    return info, None


def tar_bytes(entries, footer: bool = True) -> bytes:
    """A tar of the entries; footer=False cuts the end-of-archive blocks as old umoci did."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
        end_of_last = buf.tell()
    raw = buf.getvalue()
    if not footer:
        last_info, last_data = entries[-1]
        unpadded = end_of_last - ((512 - len(last_data or b"") % 512) % 512)
        raw = raw[:unpadded]
    return raw


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1)


def zstd(data: bytes) -> bytes:
    import zstandard
    return zstandard.ZstdCompressor().compress(data)
