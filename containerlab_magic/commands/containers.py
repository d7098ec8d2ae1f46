"""A container's life: run, exec, ps, logs, stop, kill, rm, wait, update, pause, port.

Each verb is a thin, checked call into the Engine: the checks a face needs
before the runtime sees the request (is the image known? is the signal a
real one?) live here once, so the CLI and the magics answer bad input alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..parsers import Filter, parse_signal
from ..runtime.errors import NotFound


@dataclass
class PsRow:
    """One container as `ps` lists it."""

    id: str
    name: str
    image: str
    command: tuple[str, ...]
    status: str  # created, running, exiting, exited, dead
    created: float
    finished: float | None = None
    exit_code: int | None = None
    paused: bool = False
    timed_out: bool = False
    oom_killed: bool = False
    oom_kills: int = 0
    ports: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    pid: int | None = None

    @classmethod
    def from_state(cls, state: dict) -> "PsRow":
        spec = state.get("spec") or {}
        return cls(
            id=state["id"], name=state.get("name") or "", image=state.get("image") or spec.get("image", ""),
            command=tuple(state.get("command") or spec.get("command") or ()), status=state.get("status", "unknown"),
            created=state.get("created") or 0.0, finished=state.get("finished"), exit_code=state.get("exit_code"),
            paused=bool(state.get("paused")), timed_out=bool(state.get("timed_out")),
            oom_killed=bool(state.get("oom_killed")), oom_kills=int(state.get("oom_kills") or 0),
            ports=tuple(state.get("ports") or ()), labels=dict(tuple(kv) for kv in spec.get("labels") or ()),
            pid=state.get("pid"))

    @property
    def shown_status(self) -> str:
        """The status a filter compares: 'paused' for a frozen running container, as docker."""
        return "paused" if self.status == "running" and self.paused else self.status


def check_image(engine, name: str) -> None:
    """Refuse an image this host does not have, naming the ones it has."""
    from ..runtime.images import ImageStore

    names = sorted(ImageStore(engine.data_root).names(), key=lambda n: (n != "host", n))  # the default first
    if name not in names:
        raise NotFound(f"unknown image {name!r}; local images: {', '.join(names)}")


def run(engine, spec, on_output=None, on_pull=None, *, explain: bool = False,
        tty_size: tuple[int, int] | None = None):
    """Start a container from a validated ContainerSpec; the Engine's Container
    (stream its output(), then wait() for its Result).

    The runtime resolves the image before it makes anything, so an unknown image
    is asked about only when the runtime reports something not found: the image
    store stays off the path of every successful `run` (a few ms of imports).
    Then, as docker does, a reference that is not in the store is pulled:
    `on_pull(name)` is told first and returns the pull's progress callback
    (or None); without on_pull nothing is pulled.  Unlike docker, only a
    reference that names its registry (127.0.0.1:5000/app, registry.example/app)
    or any name when CONTAINERLAB_REGISTRY sets a default: a mistyped bare word
    (`run echo hi`) is an unknown image, never a lookup on the internet."""
    try:
        return engine.run(spec, on_output=on_output, explain=explain, tty_size=tty_size)
    except NotFound:
        if on_pull is None or not _pullable(engine, spec.image):
            check_image(engine, spec.image)  # raises the user's line if the image is the missing thing
            raise
    from .image_verbs import pull

    pull(engine, spec.image, progress=on_pull(spec.image))
    return engine.run(spec, on_output=on_output, explain=explain, tty_size=tty_size)


def _pullable(engine, name: str) -> bool:
    """A reference with a registry (named, or the configured default) that the store does not hold."""
    import os

    from ..runtime.images.reference import parse
    from .image_verbs import has_image

    first, sep, _ = name.partition("/")
    named = sep and ("." in first or ":" in first or first == "localhost")
    if not (named or os.environ.get("CONTAINERLAB_REGISTRY")):
        return False
    try:
        parse(name)
    except ValueError:
        return False
    return not has_image(engine, name)


def exec_(engine, ref: str, command: list[str], *, env: dict | None = None, workdir: str | None = None,
          user: str | None = None, tty: bool = False, interactive: bool = False, on_output=None):
    """Another process in a running container; a Container to stream and wait for."""
    from ..runtime.errors import SpecError

    command = list(command[1:] if command[:1] == ["--"] else command)
    if not command:
        raise SpecError(f"exec {ref}: no command given: say what to run, e.g. exec {ref} sh")
    return engine.exec(ref, command, env=env, workdir=workdir, user=user, tty=tty, interactive=interactive,
                       on_output=on_output)


def _matches(row: PsRow, filters: tuple[Filter, ...]) -> bool:
    """Docker's rule: every label filter must hold; for the other keys, each key
    given must match at least one of its values."""
    by_key: dict[str, list[str]] = {}
    for f in filters:
        by_key.setdefault(f.key, []).append(f.value)
    for want in by_key.get("label", ()):
        key, sep, value = want.partition("=")
        if key not in row.labels or (sep and row.labels[key] != value):
            return False
    tests = {"name": lambda v: v in row.name, "id": lambda v: row.id.startswith(v),
             "status": lambda v: row.shown_status == v}
    return all(any(tests[key](v) for v in values) for key, values in by_key.items() if key != "label")


def ps(engine, all: bool = False, filters: tuple[Filter, ...] = ()) -> list[PsRow]:
    """Containers, newest first: running ones, or every one with all=True (or a status filter)."""
    wants_status = any(f.key == "status" for f in filters)
    rows = [PsRow.from_state(state) for state in engine.ps(all=all or wants_status)]
    rows = [row for row in rows if _matches(row, filters)]
    rows.sort(key=lambda row: row.created, reverse=True)
    return rows


def logs(engine, ref: str, follow: bool = False):
    """(stream, bytes) pairs of a detached container's output, in order."""
    return engine.logs(ref, follow=follow)


def check_grace(grace: float) -> float:
    """A stop's grace period: from 0 to 30 days (refuses nan and inf)."""
    from ..runtime.errors import SpecError
    from ..runtime.spec import MAX_TIMEOUT

    if not 0 <= grace <= MAX_TIMEOUT:
        raise SpecError(f"invalid stop time {grace:g}: give seconds from 0 to {MAX_TIMEOUT} (30 days), e.g. -t 10")
    return grace


def stop(engine, ref: str, grace: float = 10.0) -> bool:
    """SIGTERM, then SIGKILL after `grace` seconds; True if it needed SIGKILL."""
    return engine.stop(ref, grace=check_grace(grace))


def kill(engine, ref: str, sig: str | int = "KILL") -> int:
    """Send a signal (a name with or without SIG, any case, or a number); the number sent."""
    number = parse_signal(sig)
    engine.kill(ref, number)
    return number


def rm(engine, ref: str, force: bool = False) -> None:
    engine.rm(ref, force=force)


def wait(engine, ref: str) -> int | None:
    """Its exit code once it ends (None when it was removed as it ended)."""
    return engine.wait(ref)


def update(engine, ref: str, limits, *, net_rate: str | None = None, net_delay: str | None = None,
           net_loss: str | None = None):
    """Change limits of a running container: (before, after) Limits."""
    from ..runtime.errors import SpecError

    if (limits is None or not limits.any_cgroup_limit) and not (net_rate or net_delay or net_loss):
        raise SpecError("nothing to update: give --memory, --cpus, --pids-limit, --net-rate, ...")
    return engine.update(ref, limits, net_rate=net_rate, net_delay=net_delay, net_loss=net_loss)


def pause(engine, ref: str) -> None:
    engine.pause(ref)


def unpause(engine, ref: str) -> None:
    engine.unpause(ref)


def port(engine, ref: str) -> list:
    """The container's published ports (PortMap: host_ip, host_port, container_port, protocol)."""
    from ..runtime.spec import PortMap

    spec = engine.inspect(ref).get("spec") or {}
    return [PortMap(**p) for p in spec.get("ports") or ()]


def exposed(engine, ref: str) -> list[str]:
    """Ports its image exposes ("80/tcp") that no -p publishes."""
    spec = engine.inspect(ref).get("spec") or {}
    published = {f"{p['container_port']}/{p['protocol']}" for p in spec.get("ports") or ()}
    return [p for p in spec.get("exposed_ports") or () if p not in published]
