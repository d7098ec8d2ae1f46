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
    try:
        return _config(doc)
    except (AttributeError, TypeError, ValueError) as e:  # a field of the wrong JSON type
        raise BadImage(f"the image config is malformed ({type(e).__name__}: {e})".splitlines()[0]) from None


def _config(doc: dict) -> ImageConfig:
    conf = _object(doc.get("config"), "config")
    env = []
    for item in conf.get("Env") or ():
        key, _, value = str(item).partition("=")
        env.append((key, value))
    rootfs = _object(doc.get("rootfs"), "rootfs")
    diff_ids = tuple(str(d) for d in rootfs.get("diff_ids") or ())
    if rootfs and rootfs.get("type") != "layers":
        raise BadImage(f"the image config's rootfs.type is {rootfs.get('type')!r}, not 'layers'")
    labels = _object(conf.get("Labels"), "Labels")
    return ImageConfig(
        entrypoint=_strings(conf.get("Entrypoint"), "Entrypoint"),
        cmd=_strings(conf.get("Cmd"), "Cmd"),
        env=tuple(env),
        workdir=_text(conf.get("WorkingDir"), "WorkingDir"),
        user=_text(conf.get("User"), "User"),
        exposed_ports=tuple(sorted(str(p) for p in _object(conf.get("ExposedPorts"), "ExposedPorts"))),
        stop_signal=_text(conf.get("StopSignal"), "StopSignal"),
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        os=_text(doc.get("os"), "os") or "linux",
        architecture=_text(doc.get("architecture"), "architecture"),
        created=_text(doc.get("created"), "created"),
        diff_ids=diff_ids,
        history=tuple(h for h in doc.get("history") or () if isinstance(h, dict)),
    )


def _object(value, name: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadImage(f"the image config's {name} is not a JSON object")
    return value


def _text(value, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadImage(f"the image config's {name} is not a string")
    return value
