"""Push, login and logout.

Push sends what the registry lacks, config and layers first and the manifest
last (a registry refuses a manifest whose blobs it does not have:
MANIFEST_BLOB_UNKNOWN).  A blob the registry already holds in another
repository is mounted across (`POST uploads/?mount=&from=`) instead of sent
again; others go up in chunks (PATCH with Content-Range, then PUT ?digest=).
Login checks the credentials against `/v2/` before it writes them down.
"""

from __future__ import annotations

from ..errors import NotFound
from . import auth
from .oci import OciStore
from .reference import DOCKER_HUB, DOCKER_HUB_API, Reference, parse
from .registry import Registry


def local_digest(store: OciStore, name: str) -> str:
    ref = parse(name)
    digest = store.refs().get(str(ref))
    if digest is None:
        raise NotFound(f"no image {ref.familiar()} in the store: pull, load or tag one first")
    return digest


def push(store: OciStore, name: str, target: str | None = None, progress=None,
         chunk: int = 8 << 20, registry: Registry | None = None) -> tuple[Reference, str]:
    """Push the local image `name` to `target` (default: where its name says); returns (ref, digest)."""
    digest = local_digest(store, name)
    dest = parse(target or name)
    record = store.record(digest)
    sources = _sources(store, digest, dest)
    own = registry is None
    reg = registry or Registry(dest.api_host)
    try:
        for desc in (record.manifest.config, *record.manifest.layers):
            _blob(store, reg, dest.repository, desc.digest, sources, chunk, progress)
        data = store.blobs.read(digest)
        reg.put_manifest(dest.repository, dest.tag or dest.digest, data, record.manifest.media_type)
    finally:
        if own:
            reg.close()
    store.set_ref(str(dest), digest)
    return dest, digest


def _sources(store: OciStore, digest: str, dest: Reference) -> list[str]:
    """Other repositories of the same registry that hold this image: mount from them."""
    found = []
    for name, target in store.refs().items():
        if target == digest:
            ref = parse(name)
            if ref.registry == dest.registry and ref.repository != dest.repository:
                found.append(ref.repository)
    return found


def _blob(store, reg: Registry, repo: str, digest: str, sources: list[str], chunk: int, progress) -> None:
    if reg.has_blob(repo, digest):
        if progress:
            progress(digest, 0, 0, "exists")
        return
    location = None
    for source in sources[:1]:
        location = reg.mount(repo, digest, source)
        if location is None:
            if progress:
                progress(digest, 0, 0, "mounted")
            return
    report = (lambda d, done, total: progress(d, done, total, "uploading")) if progress else None
    reg.upload(repo, store.blobs.path(digest), digest, location, chunk, report)
    if progress:
        progress(digest, 0, 0, "done")


def login(host: str, user: str, password: str) -> str:
    """Check the credentials against the registry, then keep them; returns the file written."""
    api = DOCKER_HUB_API if host == DOCKER_HUB else host
    with Registry(api, credentials=(user, password)) as reg:
        reg.ping()
    return auth.save_credentials(host, user, password)


def logout(host: str) -> str:
    return auth.save_credentials(host, "", None)
