"""A stack: several containers described in one compose-style YAML document.

This module only reads and checks the document (the subset of docker
compose people write first: services with image, command, environment,
env_file, ports, volumes, depends_on, healthcheck, restart, networks and
limits) into frozen `Stack` and `Service` objects.  commands/stack.py runs
them.  Every mistake is one line naming the YAML line and the key, e.g.
`line 7: services.web: unknown key 'prots' (known: ...)`.

Each service becomes one container named STACK-SERVICE-1 on one bridge
network of the stack (STACK_default unless it names another), labelled
com.docker.compose.project=STACK and com.docker.compose.service=SERVICE.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .runtime.errors import SpecError
from .runtime.spec import Limits, Mount, PortMap, parse_name
from .stack_fields import _command, _depends, _environment, _health, _limits, _list, _order, _pairs, _restart, _volume

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"

TOP_KEYS = ("name", "version", "services", "networks")
SERVICE_KEYS = ("image", "command", "environment", "env_file", "ports", "volumes", "depends_on", "healthcheck",
                "restart", "networks", "mem_limit", "cpus", "pids_limit", "deploy", "hostname", "working_dir",
                "user", "labels")
HEALTH_KEYS = ("test", "interval", "timeout", "retries", "start_period")
CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")
LIMIT_KEYS = ("memory", "cpus", "pids")
DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)(h|ms|m|s|us))+$")
_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)")
_SCALE = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}


class Lines(dict):
    """A YAML mapping that remembers the line of each key (for the error messages)."""

    line = 0
    key_lines: dict


def _loader():
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            mapping = Lines(super().construct_mapping(node, deep=True))
            mapping.line = node.start_mark.line + 1
            mapping.key_lines = {self.construct_object(k, deep=True): k.start_mark.line + 1 for k, _ in node.value}
            return mapping

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, Loader.construct_mapping)
    return Loader


def _where(mapping, key=None) -> str:
    line = getattr(mapping, "key_lines", {}).get(key) if key is not None else getattr(mapping, "line", 0)
    return f"line {line or getattr(mapping, 'line', '?')}"


def _fail(mapping, key, path: str, text: str):
    raise SpecError(f"{_where(mapping, key)}: {path}: {text}")


def _check_keys(mapping, path: str, known: tuple[str, ...]) -> None:
    if not isinstance(mapping, dict):
        raise SpecError(f"{path}: expected a mapping of keys to values, got {type(mapping).__name__}")
    for key in mapping:
        if key not in known:
            _fail(mapping, key, path, f"unknown key {key!r} (known: {', '.join(known)})")


def parse_duration(raw, what: str) -> float:
    """'5s', '500ms', '1m30s' or a number of seconds -> seconds."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw >= 0:
        return float(raw)
    text = str(raw).strip()
    if not DURATION_RE.match(text):
        raise SpecError(f"invalid {what} {raw!r}: write a duration like 2s, 500ms or 1m30s")
    return sum(float(n) * _SCALE[u] for n, u in _PART_RE.findall(text))


@dataclass(frozen=True)
class Health:
    """A healthcheck: a command run in the container (exec) until it succeeds."""

    command: tuple[str, ...]
    interval: float = 1.0
    timeout: float = 5.0
    retries: int = 30
    start_period: float = 0.0


@dataclass(frozen=True)
class Service:
    name: str
    image: str
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[PortMap, ...] = ()
    mounts: tuple[Mount, ...] = ()
    depends_on: tuple[tuple[str, str], ...] = ()  # (service, condition)
    health: Health | None = None
    restart: str = "no"  # "no" or "on-failure"
    max_restarts: int | None = None  # on-failure:N
    network: str = "default"  # the stack's own name for it
    limits: Limits = field(default_factory=Limits)
    hostname: str | None = None
    workdir: str = "/"
    user: str | None = None
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Stack:
    name: str
    services: tuple[Service, ...]  # in start order (dependencies first)
    networks: tuple[str, ...]  # the stack's names for its networks

    def network_name(self, network: str) -> str:
        """The lab's name for one of the stack's networks."""
        return f"{self.name}_{network}"

    def container_name(self, service: str) -> str:
        return f"{self.name}-{service}-1"

    def service(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise SpecError(f"stack {self.name} has no service {name!r}: it has {', '.join(self.service_names)}")

    @property
    def service_names(self) -> list[str]:
        return [s.name for s in self.services]


def load(text: str, name: str | None = None, base_dir: str = ".") -> Stack:
    """Parse and check a stack document; relative paths (env_file, volumes) are from base_dir."""
    import yaml

    try:
        document = yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]  # (a ReaderError has none)
        raise SpecError(f"{where}not valid YAML: {' '.join(str(problem).split())}") from None
    if not isinstance(document, dict):
        raise SpecError("a stack is a YAML mapping with a 'services:' key, e.g. services: {web: {image: busybox}}")
    _check_keys(document, "top level", TOP_KEYS)
    name = name or document.get("name")
    if not name:
        raise SpecError("the stack has no name: give one (%%stack NAME, -p NAME) or a top-level 'name:'")
    parse_name(str(name), "stack name")
    if "_" in str(name):
        raise SpecError(f"invalid stack name {name!r}: use letters, digits, '.' and '-' (no '_')")
    services = document.get("services")
    if not isinstance(services, dict) or not services:
        raise SpecError(f"{_where(document, 'services')}: services: give at least one service, "
                        "e.g. services: {web: {image: busybox, command: httpd -f}}")
    networks = _networks(document)
    parsed = {key: _service(services, key, networks, base_dir) for key in services}
    for service in parsed.values():
        for dep, _ in service.depends_on:
            if dep not in parsed:
                _fail(services[service.name], "depends_on", f"services.{service.name}.depends_on",
                      f"no service {dep!r} in this stack")
    return Stack(str(name), tuple(parsed[s] for s in _order(parsed)), networks)


def _networks(document) -> tuple[str, ...]:
    declared = document.get("networks") or {}
    if not isinstance(declared, dict):
        raise SpecError(f"{_where(document, 'networks')}: networks: a mapping of names, e.g. networks: {{back: {{}}}}")
    for key, value in declared.items():
        parse_name(str(key), "network name")
        if value not in (None, {}):
            _fail(declared, key, f"networks.{key}", "options are not supported here: write `{key}: {}`")
    return ("default",) + tuple(str(k) for k in declared if k != "default")


def _service(services, key, networks, base_dir) -> Service:
    path = f"services.{key}"
    svc = services[key]
    if svc is None:
        _fail(services, key, path, "give at least an image, e.g. image: busybox")
    _check_keys(svc, path, SERVICE_KEYS)
    if not re.match(r"^[a-z0-9][a-z0-9.-]*$", str(key)) or len(str(key)) > 40:
        _fail(services, key, path, "a service name uses lowercase letters, digits, '.' and '-'")

    def bad(k, text):
        _fail(svc, k, f"{path}.{k}", text)

    def part(keys, parse):
        try:
            return parse()
        except SpecError as e:
            if str(e).startswith("line "):  # located already, deeper in the document
                raise
            which = next((k for k in keys if k in svc), None)
            raise SpecError(f"{_where(svc, which)}: {path}.{which or keys[0]}: {e}") from None

    command = part(("command",), lambda: _command(svc.get("command")))
    env = part(("env_file", "environment"), lambda: _environment(svc, base_dir))
    ports = part(("ports",), lambda: tuple(PortMap.parse(str(p)) for p in _list(svc, "ports")))
    mounts = part(("volumes",), lambda: tuple(Mount.parse(_volume(str(v), base_dir)) for v in _list(svc, "volumes")))
    limits = part(("mem_limit", "cpus", "pids_limit", "deploy"), lambda: _limits(svc, path))
    health = part(("healthcheck",), lambda: _health(svc["healthcheck"], path) if svc.get("healthcheck") else None)
    image = svc.get("image")
    if not image:
        bad("image", "give an image, e.g. image: busybox") if "image" in svc else _fail(
            services, key, path, "no image: add e.g. image: busybox")
    if not command:
        bad("command" if "command" in svc else "image", "give a command: the lab's images have none of their own")
    restart, max_restarts = _restart(svc.get("restart", "no"), lambda text: bad("restart", text))
    nets = svc.get("networks") or ["default"]
    if isinstance(nets, dict):
        nets = list(nets)
    if not isinstance(nets, list) or len(nets) != 1:
        bad("networks", "a service joins exactly one network here, e.g. networks: [back]")
    if str(nets[0]) not in networks:
        bad("networks", f"no network {nets[0]!r}: declare it under the top-level networks:")
    depends = _depends(svc, path)
    return Service(str(key), str(image), command, env, ports, mounts, depends, health, restart, max_restarts,
                   str(nets[0]), limits, hostname=str(svc.get("hostname") or key),
                   workdir=str(svc.get("working_dir") or "/"),
                   user=None if svc.get("user") is None else str(svc["user"]),
                   labels=tuple(_pairs(svc.get("labels"), f"{path}.labels")))
