"""What a container should be: frozen data, validated once at the edge.

`ContainerSpec` is the whole request (image, command, namespaces' settings,
mounts, limits); `Limits` the cgroup resources; `Mount` a bind mount;
`PortMap` a published port.  Every parser here raises `SpecError` whose text
is one line saying what is wrong and how to write it instead.  Code below the
edge trusts these objects and never re-validates them.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field

from .errors import SpecError


class _Pattern:
    """A regular expression compiled on first use: this module is on the path of every
    CLI call, and most runs give no name, hostname, env or size to check."""

    def __init__(self, pattern: str, flags: int = 0):
        self.pattern, self.flags, self._compiled = pattern, flags, None

    def match(self, text: str):
        if self._compiled is None:
            self._compiled = re.compile(self.pattern, self.flags)
        return self._compiled.match(text)


NAME_RE = _Pattern(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
HOSTNAME_RE = _Pattern(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")
ENV_KEY_RE = _Pattern(r"^[A-Za-z_][A-Za-z0-9_]*$")
SIZE_RE = _Pattern(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

# Upper bounds checked up front, so a typo gets a sentence instead of a kernel errno (or,
# worse, a value the kernel silently reads as "unlimited").
MAX_SIZE = 1 << 50  # 1024T: beyond any host's memory; larger values overflow the kernel's page counters
PID_MAX_LIMIT = 4 << 20  # the kernel's ceiling for pid_max and pids.max on 64-bit (see proc(5))
MAX_TIMEOUT = 30 * 86400  # 30 days: longer is a typo, and huge values overflow the shim's timers

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def parse_size(text: str | int, what: str = "size") -> int:
    """'64M', '1.5G', '512k', '4096' -> bytes (binary units, like docker)."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise SpecError(f"{what} must not be negative: {text}")
        return text
    m = SIZE_RE.match(str(text))
    if not m:
        raise SpecError(
            f"invalid {what} {text!r}: write a number of bytes with an optional "
            "unit k, M, G or T, for example 64M, 1.5G or 512k"
        )
    number, unit, _ = m.groups()
    return int(float(number) * SIZE_UNITS[unit.lower()])


def format_size(n: int) -> str:
    """Bytes -> the shortest exact-ish binary form: 67108864 -> '64 MiB'."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"


def parse_name(name: str, what: str = "container name") -> str:
    if not NAME_RE.match(name or ""):
        raise SpecError(
            f"invalid {what} {name!r}: use 1-63 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Limits:
    """Cgroup resource limits; None means 'not limited'."""

    memory: int | None = None  # bytes
    memory_swap: int | None = None  # bytes of memory+swap; -1 unlimited; None = same as memory
    cpus: float | None = None  # CPUs worth of time (quota / period)
    cpu_shares: int | None = None  # relative weight, docker scale 2..262144 (default 1024)
    cpuset_cpus: str | None = None  # "0-1", "0,2"
    pids_limit: int | None = None
    blkio_weight: int | None = None  # 10..1000
    # Bytes for everything the container writes: one budget, the writable layer's tmpfs.
    # /tmp is a directory of that layer (not a second tmpfs); with --read-only, where the
    # layer is not writable, /tmp is a tmpfs of this size instead: never both.
    storage_size: int | None = None

    def __post_init__(self) -> None:
        if self.memory is not None and self.memory < 4 << 20:
            raise SpecError(
                f"memory limit {format_size(self.memory)} is too small: give at least 4M"
            )
        for flag, value in (("--memory", self.memory), ("--memory-swap", self.memory_swap),
                            ("--storage-size", self.storage_size)):
            if value is not None and value > MAX_SIZE:
                raise SpecError(f"invalid {flag} {format_size(value)}: too large; give at most 1024T "
                                "(leave the flag out for no limit)")
        if self.memory_swap not in (None, -1):
            if self.memory is None:
                raise SpecError("--memory-swap needs --memory: set both, e.g. --memory 64M --memory-swap 128M")
            if self.memory_swap < self.memory:
                raise SpecError(
                    "--memory-swap must be at least --memory (it counts memory plus swap), or -1 for unlimited swap"
                )
        if self.cpus is not None and not (0.01 <= self.cpus <= host_cpus()):
            raise SpecError(f"invalid --cpus {self.cpus:g}: give from 0.01 to {host_cpus()} "
                            f"(this host has {host_cpus()} CPUs), such as 0.5")
        if self.cpu_shares is not None and not (2 <= self.cpu_shares <= 262144):
            raise SpecError(f"invalid --cpu-shares {self.cpu_shares}: give a weight from 2 to 262144 (default 1024)")
        if self.cpuset_cpus is not None and not re.match(r"^\d+(-\d+)?(,\d+(-\d+)?)*$", self.cpuset_cpus):
            raise SpecError(f"invalid --cpuset-cpus {self.cpuset_cpus!r}: write CPU numbers like 0, 0-1 or 0,2")
        if self.pids_limit is not None and not 1 <= self.pids_limit <= PID_MAX_LIMIT:
            raise SpecError(f"invalid --pids-limit {self.pids_limit}: give from 1 to {PID_MAX_LIMIT} "
                            "(leave the flag out for no limit)")
        if self.blkio_weight is not None and not (10 <= self.blkio_weight <= 1000):
            raise SpecError(f"invalid --blkio-weight {self.blkio_weight}: give a weight from 10 to 1000")
        if self.storage_size is not None and self.storage_size < 1 << 20:
            raise SpecError("--storage-size is too small: give at least 1M")

    @property
    def any_cgroup_limit(self) -> bool:
        """True when a limit needs a cgroup (storage_size is a tmpfs size, not a cgroup)."""
        return any(
            getattr(self, f.name) is not None for f in dataclasses.fields(self) if f.name != "storage_size"
        )

    @classmethod
    def parse(cls, **options: object) -> "Limits":
        """Build from option strings as typed by a user (sizes like '64M')."""
        values: dict[str, object] = {}
        for key, raw in options.items():
            if raw is None:
                continue
            if key in ("memory", "storage_size"):
                values[key] = _bounded_size(raw, "--" + key.replace("_", "-"))
            elif key == "memory_swap":
                values[key] = -1 if str(raw) == "-1" else _bounded_size(raw, "--memory-swap")
            elif key == "cpus":
                values[key] = _number(raw, float, "--cpus", "0.5")
            elif key in ("cpu_shares", "pids_limit", "blkio_weight"):
                values[key] = _number(raw, int, "--" + key.replace("_", "-"), "64")
            elif key == "cpuset_cpus":
                values[key] = str(raw)
            else:
                raise SpecError(f"unknown limit {key!r}")
        return cls(**values)  # type: ignore[arg-type]


def _bounded_size(raw: object, flag: str) -> int:
    """A size as typed, refused in the user's own words when beyond MAX_SIZE."""
    value = parse_size(raw, flag)  # type: ignore[arg-type]
    if value > MAX_SIZE:
        raise SpecError(f"invalid {flag} {raw}: too large; give at most 1024T (leave the flag out for no limit)")
    return value


def host_cpus() -> int:
    """CPUs this host has online: the most --cpus can use."""
    return os.cpu_count() or 1


def _number(raw: object, kind: type, flag: str, example: str):
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise SpecError(f"invalid {flag} {raw!r}: give a number, for example {flag} {example}") from None


@dataclass(frozen=True)
class Mount:
    """A bind mount of a host path into the container."""

    source: str
    target: str
    read_only: bool = False

    @classmethod
    def parse(cls, text: str) -> "Mount":
        """'SRC:DST[:ro|rw]' -> Mount, checking that SRC exists."""
        parts = text.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise SpecError(f"invalid volume {text!r}: write SRC:DST or SRC:DST:ro with absolute paths")
        mode = parts[2] if len(parts) == 3 else "rw"
        if mode not in ("ro", "rw"):
            raise SpecError(f"invalid volume mode {mode!r} in {text!r}: use ro or rw")
        # Symlinks resolved here, once: at mount time a symlink anywhere in the path is refused.
        source = os.path.realpath(os.path.expanduser(parts[0]))
        if not os.path.exists(source):
            raise SpecError(f"bind source {source} does not exist: create it first or fix the path")
        if not parts[1].startswith("/"):
            raise SpecError(f"bind target {parts[1]!r} must be an absolute path inside the container, like /data")
        return cls(source, os.path.normpath(parts[1]), mode == "ro")


@dataclass(frozen=True)
class PortMap:
    """A container port published on a host address (loopback by default)."""

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = "127.0.0.1"

    @classmethod
    def parse(cls, text: str) -> "PortMap":
        """'[IP:]HOST:CONTAINER[/tcp|udp]' -> PortMap."""
        spec, _, proto = text.partition("/")
        proto = proto or "tcp"
        if proto not in ("tcp", "udp"):
            raise SpecError(f"invalid protocol {proto!r} in port {text!r}: use tcp or udp")
        parts = spec.rsplit(":", 2)
        if len(parts) == 2:
            host_ip, (host, ctr) = "127.0.0.1", parts
        elif len(parts) == 3:
            host_ip, host, ctr = parts
        else:
            raise SpecError(f"invalid port {text!r}: write HOST:CONTAINER, e.g. -p 8080:80")
        import ipaddress  # -p only: off the path of a plain run

        try:
            ipaddress.ip_address(host_ip)
            host_port, ctr_port = int(host), int(ctr)
        except ValueError:
            raise SpecError(f"invalid port {text!r}: write [IP:]HOST:CONTAINER with numbers, e.g. -p 8080:80") from None
        for port in (host_port, ctr_port):
            if not 1 <= port <= 65535:
                raise SpecError(f"invalid port {port} in {text!r}: ports run from 1 to 65535")
        return cls(host_port, ctr_port, proto, host_ip)


BUILTIN_IMAGES = ("host", "busybox")  # no config: a command must be given (a stored image may have a Cmd)


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to start one container."""

    command: tuple[str, ...]
    image: str = "host"
    name: str | None = None
    hostname: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    workdir: str | None = None  # None: the image's WorkingDir, else /
    user: str | None = None  # "UID[:GID]" or a name from the image's /etc/passwd
    mounts: tuple[Mount, ...] = ()
    read_only: bool = False
    timeout: float | None = None
    detach: bool = False
    tty: bool = False
    interactive: bool = False
    limits: Limits = field(default_factory=Limits)
    network: str = "none"
    ports: tuple[PortMap, ...] = ()
    net_rate: str | None = None  # link shaping on eth0 (tc tbf/netem): "1mbit"
    net_delay: str | None = None  # "50ms"
    net_loss: str | None = None  # "1%"
    # Docker's run flags beyond the basics.  Fields only here; each is validated and
    # honoured by its own layer (labels: commands; init/auto_remove: the start plan;
    # capabilities, privileges, seccomp: security).
    labels: tuple[tuple[str, str], ...] = ()  # --label K=V, for ps --filter label=K=V
    init: bool = False  # --init: a small reaping PID 1 that forwards signals to the command
    auto_remove: bool = False  # --rm for a detached container: removed when it exits
    cap_add: tuple[str, ...] = ()  # --cap-add NAME (CAP_ prefix optional, as docker)
    cap_drop: tuple[str, ...] = ()  # --cap-drop NAME, or ALL
    privileged: bool = False  # --privileged
    no_new_privileges: bool = True  # --security-opt no-new-privileges[=false]
    seccomp: str | None = None  # None: the default profile; "unconfined"; or a profile's JSON text
    # What a stored image's config fills in (image_config.apply, where the spec meets the image):
    entrypoint: tuple[str, ...] | None = None  # --entrypoint: replaces the image's, which clears its Cmd
    stop_signal: str | None = None  # the image's StopSignal (stop sends it instead of SIGTERM)
    exposed_ports: tuple[str, ...] = ()  # the image's ExposedPorts ("80/tcp"), shown by `port`
    ulimits: tuple[tuple[str, int, int], ...] = ()  # --ulimit nofile=1024:2048: (name, soft, hard); -1 unlimited
    group_add: tuple[str, ...] = ()  # --group-add GID or a group name of the image's /etc/group

    def __post_init__(self) -> None:
        # Accept friendly types (list, dict) but store immutable ones.
        if isinstance(self.command, str):
            raise SpecError("command must be a list of arguments, e.g. ['sh', '-c', 'echo hi']")
        object.__setattr__(self, "command", tuple(self.command))
        env = self.env.items() if isinstance(self.env, dict) else self.env
        object.__setattr__(self, "env", tuple((str(k), str(v)) for k, v in env))
        object.__setattr__(self, "mounts", tuple(self.mounts))
        object.__setattr__(self, "ports", tuple(self.ports))
        labels = self.labels.items() if isinstance(self.labels, dict) else self.labels
        object.__setattr__(self, "labels", tuple((str(k), str(v)) for k, v in labels))
        object.__setattr__(self, "cap_add", tuple(self.cap_add))
        object.__setattr__(self, "cap_drop", tuple(self.cap_drop))
        object.__setattr__(self, "exposed_ports", tuple(self.exposed_ports))
        object.__setattr__(self, "ulimits", tuple(check_ulimit(u) for u in self.ulimits))
        object.__setattr__(self, "group_add", tuple(str(g) for g in self.group_add))
        for group in self.group_add:
            if not re.match(r"^[A-Za-z0-9_.-]+$", group) or (group.isdigit() and int(group) >= 1 << 32):
                raise SpecError(f"invalid --group-add {group!r}: give a GID like 44, or a group name from the image")
        if len({name for name, _, _ in self.ulimits}) != len(self.ulimits):
            raise SpecError("--ulimit: each limit once, e.g. --ulimit nofile=1024:2048")
        if self.entrypoint is not None:
            object.__setattr__(self, "entrypoint", tuple(self.entrypoint))
        for key, _ in self.labels:
            if not key or any(c.isspace() or not c.isprintable() for c in key):
                raise SpecError(f"invalid label key {key!r}: use letters, digits, '.', '-' or '_', e.g. course=net101")
        if self.command[:1] == ("",) or (not self.command and self.image in BUILTIN_IMAGES and not self.entrypoint):
            raise SpecError("no command given: say what to run, e.g. `containerlab-magic run busybox echo hi`")
        if not self.image:
            raise SpecError("no image given: use host, busybox or an image you pulled")
        if self.name is not None:
            parse_name(self.name)
        if self.hostname is not None and not HOSTNAME_RE.match(self.hostname):
            raise SpecError(
                f"invalid hostname {self.hostname!r}: use up to 63 letters, digits and '-', "
                "not starting or ending with '-'"
            )
        for key, _ in self.env:
            if not ENV_KEY_RE.match(key):
                raise SpecError(f"invalid environment variable name {key!r}: use letters, digits and '_'")
        if self.workdir is not None and not self.workdir.startswith("/"):
            raise SpecError(f"working directory {self.workdir!r} must be absolute, like /work")
        if self.user is not None:
            parse_user(self.user)
        if self.timeout is not None and not 0 < self.timeout <= MAX_TIMEOUT:  # also refuses nan and inf
            raise SpecError(f"invalid --timeout {self.timeout:g}: give a number of seconds above 0 and at most "
                            f"{MAX_TIMEOUT} (30 days)")
        if self.network != "none" and self.network != "host" and not self.network.startswith("container:"):
            parse_name(self.network, "network name")
        if self.ports and not self.on_bridge and self.network != "none":  # (none: a rootless lab uses pasta)
            raise SpecError("publishing ports (-p) needs a network: add --net bridge (or a network you created)")
        if (self.net_rate or self.net_delay or self.net_loss):
            if not self.on_bridge:
                raise SpecError("--net-rate/--net-delay/--net-loss shape eth0: add --net bridge (or a named network)")
            from .network.shaping import parse_shape

            parse_shape(self.net_rate, self.net_delay, self.net_loss)
        from .security import check_spec  # capabilities and seccomp profile: security/ knows them

        check_spec(self)

    @property
    def on_bridge(self) -> bool:
        """Attached to a bridge network of its own (not none, host or another's namespace)."""
        return self.network not in ("none", "host") and not self.network.startswith("container:")

    @property
    def environment(self) -> dict[str, str]:
        """The environment the command sees: defaults, then the user's -e."""
        env = {"PATH": DEFAULT_PATH, "HOME": "/root" if self.user in (None, "0", "root") else "/",
               "TERM": "xterm" if self.tty else "dumb"}
        env.update(self.env)
        return env

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "ContainerSpec":
        """The spec a request carries; SpecError (one line) for anything malformed."""
        try:
            data = dict(data)
            data["limits"] = Limits(**data.get("limits", {}))
            data["mounts"] = tuple(Mount(**m) for m in data.get("mounts", ()))
            data["ports"] = tuple(PortMap(**p) for p in data.get("ports", ()))
            data["env"] = tuple(tuple(kv) for kv in data.get("env", ()))
            data["labels"] = tuple(tuple(kv) for kv in data.get("labels", ()))
            data["ulimits"] = tuple(tuple(u) for u in data.get("ulimits", ()))
            return cls(**data)
        except SpecError:
            raise
        except (TypeError, ValueError, AttributeError, KeyError) as e:
            raise SpecError(f"malformed container spec: {type(e).__name__}: {e}".splitlines()[0]) from None


# Docker's --ulimit names (man docker-run; the resource module's RLIMIT_* constants).
ULIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
           "rss", "rtprio", "rttime", "sigpending", "stack")


def parse_ulimit(text: str) -> tuple[str, int, int]:
    """'nofile=1024:2048' or 'nofile=1024' (soft = hard) -> (name, soft, hard); -1 is unlimited."""
    name, sep, values = text.partition("=")
    soft, _, hard = values.partition(":")
    try:
        limit = (name, int(soft), int(hard or soft))
    except ValueError:
        raise SpecError(f"invalid --ulimit {text!r}: write NAME=SOFT[:HARD], e.g. nofile=1024:2048") from None
    if not sep:
        raise SpecError(f"invalid --ulimit {text!r}: write NAME=SOFT[:HARD], e.g. nofile=1024:2048")
    return check_ulimit(limit)


def check_ulimit(limit) -> tuple[str, int, int]:
    try:
        name, soft, hard = limit
    except (TypeError, ValueError):
        raise SpecError(f"invalid ulimit {limit!r}: (name, soft, hard)") from None
    if name not in ULIMITS:
        raise SpecError(f"unknown --ulimit {name!r}: one of {', '.join(ULIMITS)}")
    for value in (soft, hard):
        if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value < 1 << 63:
            raise SpecError(f"invalid --ulimit {name}={soft}:{hard}: give numbers (-1 for unlimited)")
    if hard != -1 and (soft == -1 or soft > hard):
        raise SpecError(f"invalid --ulimit {name}={soft}:{hard}: the soft limit is above the hard one")
    return name, soft, hard


def parse_env(items: list[str] | tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """['K=V', 'K2'] -> pairs; a bare K takes the caller's value, like docker."""
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            if key not in os.environ:
                raise SpecError(f"-e {key}: no value given and {key} is not set here; write -e {key}=VALUE")
            value = os.environ[key]
        pairs.append((key, value))
    return tuple(pairs)


def parse_user(text: str) -> tuple[str, str | None]:
    """'UID[:GID]' or 'name[:group]' -> (user, group)."""
    user, _, group = text.partition(":")
    if not user or not re.match(r"^[A-Za-z0-9_.-]+$", user) or (group and not re.match(r"^[A-Za-z0-9_.-]+$", group)):
        raise SpecError(f"invalid user {text!r}: write UID[:GID] like 1000:1000, or a user name from the image")
    return user, group or None
