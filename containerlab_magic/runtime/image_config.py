"""Where the spec meets the image: the image's config fills what the run left at its default.

Docker's rules (docs.docker.com/reference/run, "Image defaults"): the argv is
the image's Entrypoint + (the given command, else the image's Cmd); a given
--entrypoint replaces the Entrypoint and drops the Cmd; the environment is the
image's Env with each -e winning; WorkingDir and User apply unless -w / -u
are given (a user name is resolved in the image's /etc/passwd by PID 1, see
child.py); StopSignal is what `stop` sends first; ExposedPorts are kept for
`port`.  Built-in images have no config: the command must be given.

Called once per start, by the shim's run request (shim/start.py) right after
it resolves the image, and by the dry-run plan (Engine.plan): the state file
and every later step see the filled spec.
"""

from __future__ import annotations

import dataclasses
import signal

from .errors import SpecError
from .spec import ContainerSpec


def apply(spec: ContainerSpec, image) -> ContainerSpec:
    """The spec with the image's defaults filled in (entrypoint folded into the command)."""
    config = getattr(image, "config", None)
    if config is None:
        command = tuple(spec.entrypoint or ()) + spec.command
        workdir, user, env, stop, exposed = spec.workdir or "/", spec.user, spec.env, spec.stop_signal, ()
    else:
        command = config.command(spec.command, spec.entrypoint)
        given = {key for key, _ in spec.env}
        env = tuple((k, v) for k, v in config.env if k not in given) + spec.env
        workdir = spec.workdir or config.workdir or "/"
        user = spec.user or config.user or None
        stop, exposed = spec.stop_signal or config.stop_signal or None, config.exposed_ports
    if not command:
        raise SpecError(f"no command given and image {spec.image} has no Cmd or Entrypoint: say what to run, "
                        f"e.g. `containerlab-magic run {spec.image} sh`")
    return dataclasses.replace(spec, command=command, entrypoint=None, env=env, workdir=workdir, user=user,
                               stop_signal=stop, exposed_ports=exposed)


def stop_signal(spec: dict) -> int:
    """The signal `stop` sends first: the image's StopSignal (a name or number), else SIGTERM."""
    text = (spec or {}).get("stop_signal")
    if not text:
        return signal.SIGTERM
    word = str(text).strip().upper()
    if word.isascii() and word.isdigit():  # int() refuses digits such as '²'
        return int(word)
    try:
        return int(signal.Signals[word if word.startswith("SIG") else "SIG" + word])
    except KeyError:
        return signal.SIGTERM  # an image's unknown signal must not make a container unstoppable
