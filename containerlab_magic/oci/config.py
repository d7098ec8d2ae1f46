"""A bundle's config.json (OCI runtime-spec config.md) -> the lab's ContainerSpec.

One core, not a second runtime: what the runtime spec asks is turned into the
same ContainerSpec the lab's `run` makes, and started by the same start plan.
What that core cannot honour is refused here, at `create`, naming the field's
JSON path (`linux.namespaces[3].type`), before anything is made.

Mapped: process (args, env, cwd, user uid/gid, terminal false, capabilities as
one set, noNewPrivileges), root (path relative to the bundle, readonly),
hostname, mounts (binds; the standard /proc, /dev, /sys ... are the lab's own),
linux.namespaces (all but network are always made; no network namespace = the
host's network), linux.resources (memory, cpu, pids), maskedPaths and
readonlyPaths within the lab's own lists, annotations.  Ignored, as the spec
allows a runtime to: linux.cgroupsPath (the lab's own subtree), mountLabel,
rootfsPropagation.  Everything else that is set is refused.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from ..runtime.errors import SpecError
from . import hooks
from ..runtime.kernel_paths import MASKED_PATHS, NEWER_MASKED_PATHS, READONLY_PATHS
from ..runtime.spec import ULIMITS, ContainerSpec, Limits, Mount, check_ulimit

ROOTFS_IMAGE = "rootfs:"  # the image name of a bundle's root (images/store.py)
MADE = {"pid", "mount", "ipc", "uts", "network", "cgroup"}  # namespaces the lab's root rung makes
STANDARD_MOUNTS = {
    "/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs", "/dev/mqueue": "mqueue",
    "/sys": "sysfs", "/sys/fs/cgroup": "cgroup",
}
CAP_SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")


class ConfigError(SpecError):
    """config.json asks for something malformed or unsupported: the message names the field."""


@dataclass(frozen=True)
class Bundle:
    path: str
    config: dict
    spec: ContainerSpec
    rootfs: str
    hooks: dict  # the runtime-side hooks by kind (hooks.py)
    tty_size: tuple[int, int] | None  # process.consoleSize (rows, columns)

    @property
    def annotations(self) -> dict:
        return dict(self.config.get("annotations") or {})


def read(bundle: str, container_id: str) -> Bundle:
    bundle = os.path.abspath(bundle)
    path = os.path.join(bundle, "config.json")
    try:
        with open(path) as f:
            config = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"open {path}: no such file or directory") from None
    except ValueError as e:
        raise ConfigError(f"config.json: malformed JSON: {e}") from None
    if not isinstance(config, dict):
        raise ConfigError("config.json: the document is not a JSON object")
    reader = _Reader(config, bundle)
    spec = reader.spec(container_id)
    return Bundle(bundle, config, spec, reader.rootfs, reader.hooks, reader.tty_size())


def _refuse(where: str, why: str):
    raise ConfigError(f"config.json: {where}: {why}")


class _Reader:
    def __init__(self, config: dict, bundle: str):
        self.config, self.bundle = config, bundle
        self.rootfs = ""
        self.hooks: dict = {}

    def get(self, where: str, kind, default=None):
        node, found = self.config, True
        for key in where.split("."):
            if not isinstance(node, dict) or key not in node:
                found = False
                break
            node = node[key]
        if not found or node is None:
            return default
        if not isinstance(node, kind):
            _refuse(where, f"must be {getattr(kind, '__name__', kind)}, not {type(node).__name__}")
        return node

    def spec(self, container_id: str) -> ContainerSpec:
        if not isinstance(self.config.get("ociVersion"), str):
            _refuse("ociVersion", "missing (a string such as \"1.0.2\")")
        self._refuse_unknown()
        command = self._args()
        env = self._env()
        self.rootfs = self._root()
        network = self._namespaces()
        cap_add, cap_drop = self._capabilities()
        try:
            return ContainerSpec(
                command=tuple(command), image=ROOTFS_IMAGE + self.rootfs, name=container_id,
                hostname=self.get("hostname", str) or None, env=tuple(env), workdir=self.get("process.cwd", str, "/"),
                user=self._user(), mounts=self._mounts(), read_only=self.get("root.readonly", bool, False),
                detach=True, tty=self.get("process.terminal", bool, False), limits=self._limits(),
                network=network, cap_add=cap_add, cap_drop=cap_drop,
                no_new_privileges=self.get("process.noNewPrivileges", bool, False),
                seccomp=self._seccomp(), labels=tuple(sorted(self.annotations_labels())),
                ulimits=self._rlimits(), group_add=self._groups())
        except SpecError as e:
            raise ConfigError(f"config.json: {e}") from None

    def annotations_labels(self):
        for key, value in (self.get("annotations", dict) or {}).items():
            if isinstance(key, str) and isinstance(value, str):
                yield key, value

    def _refuse_unknown(self) -> None:
        process = self.get("process", dict, {})
        for key in ("apparmorProfile", "selinuxLabel", "oomScoreAdj", "ioPriority", "scheduler",
                    "execCPUAffinity"):
            if process.get(key) not in (None, "", {}):
                _refuse(f"process.{key}", "not supported by this runtime")
        self.hooks = hooks.check(self.config.get("hooks"), _refuse)
        linux = self.get("linux", dict, {})
        for key in ("uidMappings", "gidMappings", "sysctl", "intelRdt", "personality", "timeOffsets"):
            if linux.get(key):
                _refuse(f"linux.{key}", "not supported by this runtime")
        for i, device in enumerate(linux.get("devices") or ()):
            _refuse(f"linux.devices[{i}]", f"{device.get('path')!r}: extra device nodes are not supported")
        for key in ("maskedPaths", "readonlyPaths"):
            allowed = set(MASKED_PATHS + NEWER_MASKED_PATHS) if key == "maskedPaths" else set(READONLY_PATHS)
            for i, path in enumerate(linux.get(key) or ()):
                if path not in allowed and path not in MASKED_PATHS + READONLY_PATHS:
                    _refuse(f"linux.{key}[{i}]", f"{path!r} is not in the lab's own list (which is always applied)")

    def _args(self) -> list[str]:
        args = self.get("process.args", list)
        if not args or not all(isinstance(a, str) for a in args):
            _refuse("process.args", "must be a non-empty list of strings")
        return args

    def _env(self) -> list[tuple[str, str]]:
        env = []
        for i, item in enumerate(self.get("process.env", list, [])):
            if not isinstance(item, str) or "=" not in item:
                _refuse(f"process.env[{i}]", f"{item!r} is not KEY=VALUE")
            key, value = item.split("=", 1)
            env.append((key, value))
        return env

    def _rlimits(self) -> tuple[tuple[str, int, int], ...]:
        """process.rlimits as the lab's --ulimit (RLIMIT_NOFILE -> nofile; the largest
        uint64, RLIM_INFINITY, as -1)."""
        found = []
        for i, limit in enumerate(self.get("process.rlimits", list, [])):
            where = f"process.rlimits[{i}]"
            if not isinstance(limit, dict) or not isinstance(limit.get("type"), str):
                _refuse(where, "must be an object with a type such as RLIMIT_NOFILE")
            name = limit["type"].removeprefix("RLIMIT_").lower()
            if not limit["type"].startswith("RLIMIT_") or name not in ULIMITS:
                _refuse(f"{where}.type", f"{limit['type']!r} is not an rlimit this host knows")
            values = []
            for key in ("soft", "hard"):
                value = limit.get(key)
                if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
                    _refuse(f"{where}.{key}", f"{value!r} is not a limit (0 .. 2^64-1)")
                values.append(-1 if value >= (1 << 63) - 1 else value)
            try:
                found.append(check_ulimit((name, *values)))
            except SpecError as e:
                _refuse(where, str(e))
        return tuple(found)

    def _groups(self) -> tuple[str, ...]:
        gids = self.get("process.user.additionalGids", list, [])
        for i, gid in enumerate(gids):
            if isinstance(gid, bool) or not isinstance(gid, int) or not 0 <= gid < 1 << 32:
                _refuse(f"process.user.additionalGids[{i}]", f"{gid!r} is not a GID")
        gid = self.get("process.user.gid", int, 0)
        return tuple(str(g) for g in dict.fromkeys(gids) if g != gid)

    def _user(self) -> str | None:
        user = self.get("process.user", dict, {})
        if user.get("username"):
            _refuse("process.user.username", "is for Windows containers")
        uid, gid = user.get("uid", 0), user.get("gid", 0)
        for key, value in (("uid", uid), ("gid", gid)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                _refuse(f"process.user.{key}", f"{value!r} is not an id")
        return None if (uid, gid) == (0, 0) else f"{uid}:{gid}"

    def _root(self) -> str:
        path = self.get("root.path", str)
        if not path:
            _refuse("root.path", "missing: the directory of the container's root filesystem")
        full = os.path.normpath(os.path.join(self.bundle, path))
        if not os.path.isdir(full):
            _refuse("root.path", f"{full} is not a directory")
        if full == "/":
            _refuse("root.path", "the host's / cannot be a container's root")
        return full

    def _namespaces(self) -> str:
        kinds = []
        for i, ns in enumerate(self.get("linux.namespaces", list, [])):
            if not isinstance(ns, dict) or not isinstance(ns.get("type"), str):
                _refuse(f"linux.namespaces[{i}]", "must be an object with a type")
            kind = ns["type"]
            if kind not in MADE | {"user", "time"}:
                _refuse(f"linux.namespaces[{i}].type", f"{kind!r}: unknown namespace type")
            if kind in ("user", "time"):
                _refuse(f"linux.namespaces[{i}].type", f"{kind!r}: not supported by this runtime")
            if ns.get("path"):
                _refuse(f"linux.namespaces[{i}].path", "joining an existing namespace is not supported yet")
            kinds.append(kind)
        for kind in sorted(MADE - {"network", "cgroup"} - set(kinds)):
            _refuse("linux.namespaces", f"no {kind!r} namespace: this runtime always makes one (add it)")
        return "none" if "network" in kinds else "host"

    def _capabilities(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        caps = self.get("process.capabilities", dict)
        if caps is None:
            return (), ("ALL",)  # none given: none held
        sets = {}
        for name in CAP_SETS:
            value = caps.get(name) or []
            if not isinstance(value, list) or not all(isinstance(c, str) and c.startswith("CAP_") for c in value):
                _refuse(f"process.capabilities.{name}", "must be a list of names like CAP_CHOWN")
            sets[name] = sorted(set(value))
        if sets["inheritable"] or sets["ambient"]:
            _refuse("process.capabilities.inheritable" if sets["inheritable"] else "process.capabilities.ambient",
                    "not supported: this runtime keeps the inheritable and ambient sets empty")
        if not (sets["bounding"] == sets["effective"] == sets["permitted"]):
            _refuse("process.capabilities", "bounding, effective and permitted must be one set here")
        return tuple(c[4:] for c in sets["bounding"]), ("ALL",)

    def _mounts(self) -> tuple[Mount, ...]:
        binds = []
        for i, m in enumerate(self.get("mounts", list, [])):
            if not isinstance(m, dict) or not isinstance(m.get("destination"), str):
                _refuse(f"mounts[{i}]", "must be an object with a destination")
            dest, options = m["destination"], m.get("options") or []
            if dest in STANDARD_MOUNTS and m.get("type") in (STANDARD_MOUNTS[dest], "bind", None) \
                    and "bind" not in options and "rbind" not in options:
                continue  # the lab mounts its own (rootfs.py)
            if m.get("type") == "bind" or "bind" in options or "rbind" in options:
                source = m.get("source")
                if not isinstance(source, str) or not os.path.isabs(source):
                    _refuse(f"mounts[{i}].source", f"{source!r}: a bind needs an absolute source")
                unknown = set(options) - {"bind", "rbind", "ro", "rw", "nosuid", "nodev", "noexec", "rprivate",
                                          "private", "rslave", "slave"}
                if unknown:
                    _refuse(f"mounts[{i}].options", f"{sorted(unknown)} not supported for a bind")
                binds.append(Mount(source, dest, read_only="ro" in options))
                continue
            if m.get("type") == "tmpfs":
                _refuse(f"mounts[{i}].type", f"tmpfs on {dest}: not supported yet")
            _refuse(f"mounts[{i}]", f"{m.get('type')!r} on {dest}: not supported")
        return tuple(binds)

    def _limits(self) -> Limits:
        return limits_of(self.get("linux.resources", dict, {}))

    def process(self) -> dict:
        """An exec's process object (`exec --process FILE`): args, env, cwd, user, ulimits,
        group_add, terminal, tty_size."""
        process = self.get("process", dict, {})
        for key in ("apparmorProfile", "selinuxLabel", "oomScoreAdj", "ioPriority", "scheduler"):
            if process.get(key) not in (None, "", {}, []):
                _refuse(f"process.{key}", "not supported by this runtime's exec")
        # capabilities and noNewPrivileges: an exec gets the container's own (as docker exec)
        return {"args": self._args(), "env": self._env(), "cwd": self.get("process.cwd", str), "user": self._user(),
                "ulimits": self._rlimits(), "group_add": self._groups(),
                "terminal": self.get("process.terminal", bool, False), "tty_size": self.tty_size()}

    def tty_size(self) -> tuple[int, int] | None:
        """process.consoleSize as (rows, columns), or None."""
        size = self.get("process.consoleSize", dict)
        if size is None:
            return None
        values = []
        for key in ("height", "width"):
            value = size.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
                _refuse(f"process.consoleSize.{key}", f"{value!r}: a size from 1 to 65535")
            values.append(value)
        return values[0], values[1]

    def _seccomp(self) -> str | None:
        profile = self.get("linux.seccomp", dict)
        if profile is None:
            return "unconfined"  # the runtime spec: no seccomp object, no filter
        return json.dumps(profile)


def process_of(document, source: str) -> dict:
    """`exec --process FILE`: the file's process object, read as config.json's."""
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: the document is not a JSON object (a runtime-spec process)")
    try:
        return _Reader({"process": document}, "/").process()
    except ConfigError as e:
        raise ConfigError(str(e).replace("config.json:", f"{source}:", 1)) from None


def limits_of(res, where: str = "linux.resources", source: str = "config.json") -> Limits:
    """A runtime-spec LinuxResources object as the lab's Limits (config.json, `update -r`)."""
    def refuse(at: str, why: str):
        raise ConfigError(f"{source}: {at}: {why}")

    if not isinstance(res, dict):
        refuse(where, "must be an object (runtime-spec LinuxResources)")
    known = {"memory", "cpu", "pids", "devices"}
    for key, value in res.items():
        if key not in known and value:
            refuse(f"{where}.{key}", "not supported yet")
    for i, rule in enumerate(res.get("devices") or ()):
        if rule.get("allow") or rule.get("type") not in (None, "a") or rule.get("major") or rule.get("minor"):
            refuse(f"{where}.devices[{i}]", "only the default deny-all rule is supported (the lab "
                    "applies Docker's device allowlist)")
    for group, keys in (("memory", ("limit", "reservation", "swap")), ("cpu", ("quota", "period", "shares")),
                        ("pids", ("limit",))):
        values = res.get(group) or {}
        if not isinstance(values, dict):
            refuse(f"{where}.{group}", "must be an object")
        for key in keys:
            value = values.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                refuse(f"{where}.{group}.{key}", f"{value!r} is not an integer")
    memory = (res.get("memory") or {}).get("limit")
    cpu = res.get("cpu") or {}
    cpus = None
    if cpu.get("quota") and cpu.get("quota") > 0:
        cpus = cpu["quota"] / (cpu.get("period") or 100000)
    pids = (res.get("pids") or {}).get("limit")
    try:
        return Limits(memory=memory if memory and memory > 0 else None, cpus=cpus,
                      pids_limit=pids if pids and pids > 0 else None, cpu_shares=cpu.get("shares") or None)
    except SpecError as e:
        refuse(where, str(e))
