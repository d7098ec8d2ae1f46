"""Manifests: which config and layers make an image, and which image fits this machine.

Four media types matter (OCI image-spec manifest.md and image-index.md,
Docker's Image Manifest V2 Schema 2): an OCI manifest or a Docker v2s2
manifest lists one config and the layers bottom first; an OCI index or a
Docker manifest list lists manifests per platform, from which we take
linux/<this machine's architecture>.  Schema 1 (signed JWS, no config) is
refused: registries down-convert to it only when a client forgets to ask for
the others.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass

from .config import BadImage
from .reference import DIGEST

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join(MANIFESTS + INDEXES)
MAX_MANIFEST = 4 << 20  # distribution's own limit
MAX_LAYERS = 127  # docker refuses more than 125 + a little; overlay's mount options must fit a page

ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "386",
        "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}
VARIANT = {"armv7l": "v7", "armv6l": "v6", "aarch64": "v8"}


def this_platform() -> tuple[str, str, str]:
    machine = platform.machine()
    return "linux", ARCH.get(machine, machine), VARIANT.get(machine, "")


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: tuple[str, str, str] = ("", "", "")  # os, architecture, variant (index entries)

    @classmethod
    def of(cls, doc: dict) -> "Descriptor":
        if not isinstance(doc, dict) or not DIGEST.match(str(doc.get("digest"))) \
                or not isinstance(doc.get("size"), int) or doc["size"] < 0:
            raise BadImage(f"a descriptor in the manifest lacks a sha256 digest or a size: {str(doc)[:120]}")
        plat = doc.get("platform") or {}
        where = [plat.get(k, "") for k in ("os", "architecture", "variant")] if isinstance(plat, dict) else [None]
        fields = (doc.get("mediaType", ""), *where)
        if not all(isinstance(f, str) for f in fields):
            raise BadImage(f"a descriptor in the manifest has a malformed mediaType or platform: {str(doc)[:120]}")
        return cls(fields[0], doc["digest"], doc["size"], tuple(fields[1:]))

    def to_json(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]  # bottom first


def media_type_of(data: bytes, content_type: str = "") -> str:
    try:
        doc = json.loads(data)
    except ValueError:
        raise BadImage("the manifest is not JSON") from None
    if not isinstance(doc, dict):  # a registry's '0' or '[]' must not reach doc.get below (or in pick_platform)
        raise BadImage(f"the manifest is not a JSON object but {type(doc).__name__}")
    kind = doc.get("mediaType")
    if not kind:
        ctype = content_type.split(";")[0].strip()
        kind = ctype if ctype in MANIFESTS + INDEXES else ""
    if not kind:
        kind = OCI_INDEX if "manifests" in doc else OCI_MANIFEST if "config" in doc else ""
    if kind not in MANIFESTS + INDEXES:
        raise BadImage(f"unsupported manifest type {kind or content_type or 'unknown'!r} "
                       "(schema 1 images are not supported: push the image again with a current tool)")
    return kind


def parse_manifest(data: bytes, content_type: str = "") -> Manifest:
    kind = media_type_of(data, content_type)
    if kind not in MANIFESTS:
        raise BadImage(f"expected an image manifest, got {kind}")
    doc = json.loads(data)
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise BadImage("the manifest has no layers list")
    if len(layers) > MAX_LAYERS:
        raise BadImage(f"the image has {len(layers)} layers, more than {MAX_LAYERS}: squash it")
    return Manifest(kind, Descriptor.of(doc.get("config")), tuple(Descriptor.of(layer) for layer in layers))


def pick_platform(data: bytes, want: tuple[str, str, str] | None = None) -> Descriptor:
    """The entry of an index for `want` (default: this machine); one-line error listing the others."""
    want = want or this_platform()
    entries = [Descriptor.of(d) for d in json.loads(data).get("manifests") or ()]
    matches = [d for d in entries if d.platform[:2] == want[:2] and d.media_type not in INDEXES]
    exact = [d for d in matches if d.platform[2] == want[2]] or [d for d in matches if not d.platform[2]]
    if exact or matches:
        return (exact or matches)[0]
    have = sorted({"/".join(p for p in d.platform if p) or "unknown" for d in entries})
    raise BadImage(f"no image for {want[0]}/{want[1]} in this index (it has {', '.join(have) or 'nothing'}): "
                   "choose an image built for this machine")
