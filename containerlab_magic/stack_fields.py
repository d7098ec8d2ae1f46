"""The fields of a stack's service, each parsed from its YAML value (see stack.py).

Each function takes the raw value (or the service's mapping) and returns the
frozen form, raising SpecError with a short text; stack.py adds the line and
the key's path.  The dependency order (a topological sort) is here too.
"""

from __future__ import annotations

import os
import shlex

from .runtime.errors import SpecError
from .runtime.spec import Limits

def _list(svc, key) -> list:
    value = svc.get(key) or []
    if not isinstance(value, list):
        raise SpecError(f"{key}: a list, e.g. {key}: [\"8080:80\"]")
    return value


def _command(raw) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return tuple(shlex.split(raw))
    if isinstance(raw, list) and all(isinstance(a, (str, int, float)) for a in raw):
        return tuple(str(a) for a in raw)
    raise SpecError("command: a string or a list of words, e.g. command: [\"httpd\", \"-f\"]")


def _pairs(raw, what: str) -> list[tuple[str, str]]:
    """A mapping or a list of K=V into pairs (compose allows both)."""
    if raw is None:
        return []
    if isinstance(raw, dict):
        return [(str(k), "" if v is None else str(v)) for k, v in raw.items()]
    if isinstance(raw, list):
        pairs = []
        for item in raw:
            k, sep, v = str(item).partition("=")
            if not sep:
                raise SpecError(f"{what}: {item!r} has no '=': write KEY=VALUE")
            pairs.append((k, v))
        return pairs
    raise SpecError(f"{what}: a mapping (KEY: VALUE) or a list of KEY=VALUE")


def _environment(svc, base_dir) -> tuple[tuple[str, str], ...]:
    pairs = []
    files = svc.get("env_file") or []
    for path in [files] if isinstance(files, str) else files:
        full = os.path.join(base_dir, os.path.expanduser(str(path)))
        try:
            with open(full) as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise SpecError(f"env_file {path}: cannot read {full}: {e.strerror}") from None
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if line and not line.startswith("#"):
                k, sep, v = line.partition("=")
                if not sep:
                    raise SpecError(f"env_file {path}, line {number}: write KEY=VALUE, not {line!r}")
                pairs.append((k.strip(), v))
    pairs += _pairs(svc.get("environment"), "environment")
    return tuple(pairs)


def _volume(text: str, base_dir: str) -> str:
    source, sep, rest = text.partition(":")
    if sep and (source.startswith(".") or source.startswith("~")):
        source = os.path.normpath(os.path.join(base_dir, os.path.expanduser(source)))
    return f"{source}{sep}{rest}"


def _limits(svc, path: str) -> Limits:
    from .stack import LIMIT_KEYS, _check_keys

    values = {"memory": svc.get("mem_limit"), "cpus": svc.get("cpus"), "pids_limit": svc.get("pids_limit")}
    deploy = svc.get("deploy")
    if deploy is not None:
        _check_keys(deploy, f"{path}.deploy", ("resources",))
        resources = deploy.get("resources") or {}
        _check_keys(resources, f"{path}.deploy.resources", ("limits",))
        limits = resources.get("limits") or {}
        _check_keys(limits, f"{path}.deploy.resources.limits", LIMIT_KEYS)
        for key, target in (("memory", "memory"), ("cpus", "cpus"), ("pids", "pids_limit")):
            if limits.get(key) is not None:
                values[target] = limits[key]
    return Limits.parse(**values)


def _health(raw, path: str):
    from .stack import HEALTH_KEYS, Health, _check_keys

    _check_keys(raw, f"{path}.healthcheck", HEALTH_KEYS)
    test = raw.get("test")
    if isinstance(test, str):
        command = ("/bin/sh", "-c", test)
    elif isinstance(test, list) and test and test[0] == "NONE":
        return None
    elif isinstance(test, list) and len(test) >= 2 and test[0] == "CMD":
        command = tuple(str(a) for a in test[1:])
    elif isinstance(test, list) and len(test) == 2 and test[0] == "CMD-SHELL":
        command = ("/bin/sh", "-c", str(test[1]))
    else:
        raise SpecError("test: write [\"CMD\", \"wget\", \"-q\", \"URL\"], [\"CMD-SHELL\", \"...\"] "
                        "or a shell string")
    retries = raw.get("retries", 30)
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 1:
        raise SpecError(f"retries: a whole number from 1, not {retries!r}")
    from .stack import parse_duration

    return Health(command, parse_duration(raw.get("interval", 1), "healthcheck.interval"),
                  parse_duration(raw.get("timeout", 5), "healthcheck.timeout"), retries,
                  parse_duration(raw.get("start_period", 0), "healthcheck.start_period"))


def _restart(raw, bad) -> tuple[str, int | None]:
    text = "no" if raw is False else str(raw)
    if text == "no":
        return "no", None
    policy, _, count = text.partition(":")
    if policy == "on-failure" and (not count or (count.isascii() and count.isdigit())):
        return "on-failure", int(count) if count else None
    bad(f"restart {text!r} is not supported here: use no, on-failure or on-failure:N")
    raise AssertionError  # bad raised


def _depends(svc, path) -> tuple[tuple[str, str], ...]:
    from .stack import CONDITIONS, _check_keys, _fail

    raw = svc.get("depends_on") or []
    if isinstance(raw, list):
        return tuple((str(d), "service_started") for d in raw)
    if not isinstance(raw, dict):
        _fail(svc, "depends_on", f"{path}.depends_on", "a list of services, or a mapping with conditions")
    pairs = []
    for dep, options in raw.items():
        options = options or {}
        _check_keys(options, f"{path}.depends_on.{dep}", ("condition",))
        condition = options.get("condition", "service_started")
        if condition not in CONDITIONS:
            _fail(options, "condition", f"{path}.depends_on.{dep}.condition",
                  f"unknown condition {condition!r} (known: {', '.join(CONDITIONS)})")
        pairs.append((str(dep), condition))
    return tuple(pairs)


def _order(services: dict) -> list[str]:
    """Dependencies first (a depth-first topological sort); a cycle is refused, naming it."""
    done: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycle = visiting[visiting.index(name):] + [name]
            raise SpecError(f"depends_on makes a cycle: {' -> '.join(cycle)}: break it")
        visiting.append(name)
        for dep, _ in services[name].depends_on:
            visit(dep)
        visiting.pop()
        done.append(name)

    for name in services:
        visit(name)
    return done
