"""Image references: `[registry/]name[:tag][@digest]`, normalised as docker does.

The grammar is distribution's reference package (reference/regexp.go): the
first component is a registry when it has a `.` or a `:` or is `localhost`;
otherwise the image lives on the default registry.  Docker Hub names of one
component get `library/` (`busybox` -> `docker.io/library/busybox:latest`),
and its API lives on registry-1.docker.io.  The default registry comes from
the environment (CONTAINERLAB_REGISTRY), so a course can point every bare name
at its own registry.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import SpecError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
TAG = re.compile(r"^[\w][\w.-]{0,127}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
HOST = re.compile(r"^(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$")


def default_registry() -> str:
    return os.environ.get("CONTAINERLAB_REGISTRY") or DOCKER_HUB


@dataclass(frozen=True)
class Reference:
    registry: str  # as written: docker.io, 127.0.0.1:5000, [::1]:5000
    repository: str  # library/busybox
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += ":" + self.tag
        if self.digest:
            text += "@" + self.digest
        return text

    def with_digest(self, digest: str) -> "Reference":
        return Reference(self.registry, self.repository, None, digest)

    def familiar(self) -> str:
        """The short form people type (`busybox:1.35` for Docker Hub's library images)."""
        text = str(self)
        for prefix in (DOCKER_HUB + "/library/", DOCKER_HUB + "/"):
            if text.startswith(prefix):
                return text[len(prefix):]
        return text


def parse(text: str, registry: str | None = None) -> Reference:
    """Parse and normalise; one-line SpecError saying what is wrong otherwise."""
    original = text
    if not text or text != text.strip():
        raise SpecError(f"invalid image reference {original!r}: write NAME[:TAG][@sha256:DIGEST], "
                        "for example busybox:1.35 or 127.0.0.1:5000/team/app:v1")
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not DIGEST.match(digest):
            raise SpecError(f"invalid digest in {original!r}: write @sha256: and 64 lowercase hex digits")
    tag = None
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1:]
        if not TAG.match(tag):
            raise SpecError(f"invalid tag {tag!r} in {original!r}: letters, digits, '_', '.', '-', "
                            "at most 128, not starting with '.' or '-'")
    first, _, rest = text.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        host, path = first, rest
        if not HOST.match(host):
            raise SpecError(f"invalid registry {host!r} in {original!r}: write HOST[:PORT]")
    else:
        host, path = registry or default_registry(), text
    if host in ("index.docker.io", "registry-1.docker.io"):
        host = DOCKER_HUB
    if host == DOCKER_HUB and "/" not in path:
        path = "library/" + path
    for component in path.split("/"):
        if not COMPONENT.match(component):
            raise SpecError(f"invalid image name {path!r} in {original!r}: lowercase letters, digits and "
                            "separators (. _ __ -) between them, in /-separated parts")
    if len(host) + 1 + len(path) > 255:
        raise SpecError(f"image name {original!r} is longer than 255 characters")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(host, path, tag, digest)


def is_loopback(host: str) -> bool:
    """Docker allows plain HTTP to these without configuration (127.0.0.0/8, localhost, ::1)."""
    name = host
    if name.startswith("["):
        name = name[1:name.index("]")]
    elif name.count(":") == 1:
        name = name.split(":")[0]
    return name == "localhost" or name == "::1" or name.startswith("127.")
