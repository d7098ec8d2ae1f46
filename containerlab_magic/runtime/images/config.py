"""What an image asks of a container: the `config` of an OCI image configuration.

OCI image-spec config.md: Entrypoint, Cmd, Env, WorkingDir, User,
ExposedPorts, StopSignal, Labels, plus `rootfs.diff_ids` (the sha256 of each
uncompressed layer, bottom first) and `history`.  Docker's image JSON is the
same document.  The runtime core and the faces apply it when a run leaves a
setting at its default (docker's rules: a given command replaces Cmd, a given
--entrypoint replaces Entrypoint and clears Cmd).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..errors import ContainerError


class BadImage(ContainerError):
    """An image's manifest or configuration is not what the OCI spec says."""


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    workdir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()  # "80/tcp"
    stop_signal: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    os: str = "linux"
    architecture: str = ""
    created: str = ""
    diff_ids: tuple[str, ...] = ()  # bottom first
    history: tuple[dict, ...] = field(default=(), compare=False)

    def command(self, command: tuple[str, ...] = (), entrypoint: tuple[str, ...] | None = None) -> tuple[str, ...]:
        """The argv docker would run: entrypoint + (command or Cmd)."""
        if entrypoint is not None:
            return tuple(entrypoint) + tuple(command)
        return self.entrypoint + (tuple(command) or self.cmd)


def _strings(value, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):  # docker accepts a string here (shell form)
        return ("/bin/sh", "-c", value)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadImage(f"the image config's {what} is not a list of strings")
    return tuple(value)


def parse_config(data: bytes) -> ImageConfig:
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise BadImage(f"the image config is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise BadImage("the image config is not a JSON object")
    conf = doc.get("config") or {}
    env = []
    for item in conf.get("Env") or ():
        key, _, value = str(item).partition("=")
        env.append((key, value))
    rootfs = doc.get("rootfs") or {}
    diff_ids = tuple(rootfs.get("diff_ids") or ())
    if rootfs and rootfs.get("type") != "layers":
        raise BadImage(f"the image config's rootfs.type is {rootfs.get('type')!r}, not 'layers'")
    return ImageConfig(
        entrypoint=_strings(conf.get("Entrypoint"), "Entrypoint"),
        cmd=_strings(conf.get("Cmd"), "Cmd"),
        env=tuple(env),
        workdir=conf.get("WorkingDir") or "",
        user=conf.get("User") or "",
        exposed_ports=tuple(sorted(conf.get("ExposedPorts") or {})),
        stop_signal=conf.get("StopSignal") or "",
        labels=tuple(sorted((conf.get("Labels") or {}).items())),
        os=doc.get("os") or "linux",
        architecture=doc.get("architecture") or "",
        created=doc.get("created") or "",
        diff_ids=diff_ids,
        history=tuple(doc.get("history") or ()),
    )
