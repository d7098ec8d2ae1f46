"""Pull: registry -> verified blobs -> unpacked layers -> a name in the store.

The order makes every failure safe: blobs land in tmp/ as `.part` files and
are renamed in only when their size and sha256 match; a layer is unpacked in
tmp/ and renamed in only when its diff_id matches; the name is written last,
so a failed pull leaves nothing a later `images` would show.  A download
that breaks off keeps what arrived in its `.part` and resumes from there
(a Range request), up to ATTEMPTS times in the same pull, or in the next.
Layers download and unpack in parallel threads (httpx and zlib release the
GIL while they wait or inflate), and each layer is unpacked as it streams in
(a tee to its `.part`), so a cold pull costs about one pass over the bytes;
it is kept only if the blob's digest and the layer's diff_id both match.  The whole pull holds the store lock shared,
so `prune` (exclusive) cannot free what it has written but not yet named.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

from .blobs import DigestMismatch, StoreFull, full_disk, hex_of
from .config import BadImage, parse_config
from .layers import LayerError
from .manifest import INDEXES, Descriptor, media_type_of, parse_manifest, pick_platform
from .oci import OciStore
from .reference import Reference, parse
from .registry import Interrupted, Registry, chunks

WORKERS = 3
ATTEMPTS = 3  # a download that breaks off is resumed (Range) this many times in one pull


def pull(store: OciStore, name: str, progress=None, registry: Registry | None = None,
         platform: tuple[str, str, str] | None = None) -> tuple[Reference, str]:
    """Pull `name` into the store; returns (normalised reference, manifest digest).

    `progress(layer_digest, done_bytes, total_bytes, status)` is called from worker
    threads; status is one of "waiting", "downloading", "unpacking", "exists", "done".
    """
    ref = parse(name)
    own = registry is None
    reg = registry or Registry(ref.api_host)
    try:
        with store.blobs.lock(shared=True):
            data, ctype, digest = reg.manifest(ref.repository, ref.digest or ref.tag)
            if media_type_of(data, ctype) in INDEXES:
                chosen = pick_platform(data, platform)
                data, ctype, digest = reg.manifest(ref.repository, chosen.digest)
            manifest = parse_manifest(data, ctype)
            config_data = reg.blob_bytes(ref.repository, manifest.config)
            config = parse_config(config_data)
            if len(config.diff_ids) != len(manifest.layers):
                raise BadImage(f"{ref} has {len(manifest.layers)} layers but its config lists "
                               f"{len(config.diff_ids)}: refused")
            _layers(store, reg, ref.repository, manifest.layers, config.diff_ids, progress)
            store.blobs.put(config_data, manifest.config.digest)
            store.blobs.put(data, digest)
            store.set_ref(str(ref), digest)
    finally:
        if own:
            reg.close()
    return ref, digest


def _layers(store, reg, repo, layers, diff_ids, progress) -> None:
    for desc in layers:
        if progress:
            progress(desc.digest, 0, desc.size, "waiting")
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="pull") as pool:
        futures = [pool.submit(_layer, store, reg, repo, desc, diff_id, progress)
                   for desc, diff_id in zip(layers, diff_ids)]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in futures:
            if future.done() and not future.cancelled() and future.exception():
                raise future.exception()


def _layer(store: OciStore, reg: Registry, repo: str, desc: Descriptor, diff_id: str, progress) -> None:
    if store.has_layer(diff_id) and store.blobs.has(desc.digest):
        if progress:
            progress(desc.digest, desc.size, desc.size, "exists")
        return
    with store.blobs.lock("blob-" + hex_of(desc.digest)):
        for attempt in range(1, ATTEMPTS + 1):
            try:
                _fetch(store, reg, repo, desc, diff_id, progress)
                break
            except Interrupted:
                if attempt == ATTEMPTS:
                    raise  # the .part stays: the next pull resumes it
    if progress:
        progress(desc.digest, desc.size, desc.size, "unpacking")
    store.unpack_layer(desc.digest, diff_id)
    if progress:
        progress(desc.digest, desc.size, desc.size, "done")


def _fetch(store: OciStore, reg: Registry, repo: str, desc: Descriptor, diff_id: str, progress) -> None:
    """Get the blob into the store (and, on a first full download, unpack it on the way)."""
    report = (lambda digest, done, total: progress(digest, done, total, "downloading")) if progress else None
    if store.blobs.has(desc.digest):
        return
    part = store.blobs.part(desc.digest)
    try:
        if os.path.exists(part) or store.has_layer(diff_id):
            reg.download(repo, desc, part, report)  # resume what an interrupted download began
            store.blobs.commit(part, desc.digest, desc.size)
        else:
            _stream(store, reg, repo, desc, diff_id, part, report)
    except (DigestMismatch, StoreFull, LayerError):
        _unlink(part)
        store.blobs.remove(desc.digest)  # verified, but of a layer we refuse
        raise
    except OSError as e:
        error = full_disk(e, store.root)
        if isinstance(error, StoreFull):
            _unlink(part)  # a full disk: nothing half-written stays
        raise error from None


def _stream(store: OciStore, reg: Registry, repo: str, desc: Descriptor, diff_id: str, part: str, report) -> None:
    """Download and unpack at once: the bytes go to the `.part` and the unpacker together."""
    response = reg.open_blob(repo, desc)
    try:
        with open(part, "wb") as f:
            tee = Tee(chunks(response, desc, reg.host), f, desc, report)

            def verify():
                tee.drain()
                f.flush()
                store.blobs.commit(part, desc.digest, desc.size, hashed=(tee.digest(), tee.done))

            store.unpack_layer(desc.digest, diff_id, source=tee, verify=verify)
    finally:
        response.close()


class Tee:
    """A blob as it streams in, readable as a file: written to its `.part`, hashed, counted."""

    def __init__(self, chunks, part_file, desc: Descriptor, report=None):
        self.chunks, self.file, self.desc, self.report = chunks, part_file, desc, report
        self.sha = hashlib.sha256()
        self.done = 0
        self.buf, self.pos = b"", 0

    def _more(self) -> bool:
        chunk = next(self.chunks, None)
        if chunk is None:
            return False
        self.done += len(chunk)
        if self.done > self.desc.size:
            raise DigestMismatch(f"blob {self.desc.digest} is longer than its {self.desc.size} bytes: refused")
        self.file.write(chunk)
        self.sha.update(chunk)
        self.buf = self.buf[self.pos:] + chunk if self.pos < len(self.buf) else chunk
        self.pos = 0
        if self.report:
            self.report(self.desc.digest, self.done, self.desc.size)
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            while self._more():
                pass
            n = len(self.buf) - self.pos
        while len(self.buf) - self.pos < n and self._more():
            pass
        data = self.buf[self.pos:self.pos + n]
        self.pos += len(data)
        return data

    def drain(self) -> None:
        while self._more():
            pass
        self.pos = len(self.buf)

    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
