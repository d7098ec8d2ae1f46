"""The store's verbs on names: tag, rmi, list, inspect, history.

Plain data out (dicts and dataclasses), for the commands layer to render.
Sizes are of unpacked layers (what `docker images` shows); a layer two
images share is counted in each image's size and in both `shared` sizes, as
`docker system df -v` does, so a notebook can show how images share layers.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import Conflict, NotFound
from .oci import OciStore
from .reference import parse


@dataclass(frozen=True)
class ImageRow:
    repository: str  # familiar form: busybox, 127.0.0.1:5000/team/app
    tag: str
    id: str  # config digest
    digest: str  # manifest digest
    created: str
    size: int
    shared: int  # bytes of layers another image also has


def find(store: OciStore, name: str) -> tuple[str, list[str], bool]:
    """(manifest digest, names, by id) for a name, or else an image id (or manifest digest) prefix."""
    refs = store.refs()
    try:
        ref = str(parse(name))
    except ValueError:
        ref = None
    if ref in refs:
        return refs[ref], [ref], False
    text = name[7:] if name.startswith("sha256:") else name
    if len(text) >= 4 and all(c in "0123456789abcdef" for c in text):
        hits: dict[str, list[str]] = {}
        for other, digest in refs.items():
            try:
                image_id = store.record(digest).config_digest
            except (OSError, ValueError):
                continue
            if image_id[7:].startswith(text) or digest[7:].startswith(text):
                hits.setdefault(digest, []).append(other)
        if len(hits) > 1:
            raise Conflict(f"{name!r} matches {len(hits)} images: give more of the id")
        if hits:
            digest, names = hits.popitem()
            return digest, sorted(names), True
    raise NotFound(f"no image {name!r} in the store (see `containerlab-magic images`)")


def tag(store: OciStore, source: str, target: str) -> str:
    digest, _, _ = find(store, source)
    ref = str(parse(target))
    store.set_ref(ref, digest)
    return ref


def rmi(store: OciStore, name: str, force: bool = False) -> dict:
    """Remove a name (an id: every name of that image, with force); free what nothing uses."""
    digest, names, by_id = find(store, name)
    if by_id and len(names) > 1 and not force:
        raise Conflict(f"image {name} has {len(names)} names ({', '.join(names)}): remove them by name, "
                       "or force it")
    for ref in names:
        store.set_ref(ref, None)
    freed = store.prune()
    freed["untagged"] = names
    return freed


def images(store: OciStore) -> list[ImageRow]:
    refs = store.refs()
    records, users = {}, {}
    for digest in set(refs.values()):
        try:
            records[digest] = store.record(digest)
        except (OSError, ValueError):
            continue
        for diff_id in set(records[digest].config.diff_ids):
            users.setdefault(diff_id, set()).add(digest)
    rows = []
    for ref, digest in sorted(refs.items()):
        record = records.get(digest)
        if record is None:
            continue
        size = shared = 0
        for diff_id in set(record.config.diff_ids):
            layer = _layer_size(store, diff_id)
            size += layer
            if len(users[diff_id]) > 1:
                shared += layer
        parsed = parse(ref)
        repository = parsed.familiar().rsplit(":", 1)[0] if parsed.tag else parsed.familiar().split("@")[0]
        rows.append(ImageRow(repository, parsed.tag or "<none>", record.config_digest, digest,
                             record.config.created, size, shared))
    return rows


def _layer_size(store: OciStore, diff_id: str) -> int:
    try:
        return int(store.layer_meta(diff_id)["size"])
    except (OSError, KeyError, ValueError):
        return 0


def inspect(store: OciStore, name: str) -> dict:
    """docker image inspect's main fields, plus where each layer is unpacked."""
    digest, names, _ = find(store, name)
    record = store.record(digest)
    config = record.config
    layers = [{"diff_id": d, "blob": desc.digest, "media_type": desc.media_type, "compressed": desc.size,
               "size": _layer_size(store, d), "path": store.lowerdir(d) if store.has_layer(d) else None}
              for desc, d in zip(record.manifest.layers, config.diff_ids)]
    return {
        "Id": record.config_digest, "RepoTags": names,
        "RepoDigests": [f"{parse(n).name}@{digest}" for n in names], "ManifestDigest": digest,
        "MediaType": record.manifest.media_type, "Created": config.created, "Os": config.os,
        "Architecture": config.architecture,
        "Config": {"Entrypoint": list(config.entrypoint) or None, "Cmd": list(config.cmd) or None,
                   "Env": [f"{k}={v}" for k, v in config.env], "WorkingDir": config.workdir, "User": config.user,
                   "ExposedPorts": {p: {} for p in config.exposed_ports}, "StopSignal": config.stop_signal,
                   "Labels": dict(config.labels)},
        "RootFS": {"Type": "layers", "Layers": list(config.diff_ids)},
        "Size": sum(layer["size"] for layer in layers), "Layers": layers,
    }


def history(store: OciStore, name: str) -> list[dict]:
    """Each step that made the image, newest first: its instruction and the size of its layer."""
    digest, _, _ = find(store, name)
    record = store.record(digest)
    diff_ids = list(record.config.diff_ids)
    steps = list(record.config.history) or [{} for _ in diff_ids]
    rows, next_layer = [], 0
    for step in steps:
        layer = None
        if not step.get("empty_layer") and next_layer < len(diff_ids):
            layer = diff_ids[next_layer]
            next_layer += 1
        rows.append({"created": step.get("created", ""), "created_by": step.get("created_by", ""),
                     "comment": step.get("comment", ""), "layer": layer,
                     "size": _layer_size(store, layer) if layer else 0})
    return rows[::-1]
