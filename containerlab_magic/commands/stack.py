"""Stacks: up, down, ps and logs of a compose-style document (see stack.py).

`up` makes the stack's bridge networks, then starts one detached container
per service, dependencies first, waiting for each `depends_on` condition:
started, healthy (its healthcheck command run with exec(2)-style `exec`
into the container until it exits 0) or completed successfully.  A failure
half-way removes what this `up` made, so nothing is left behind.  Services
reach each other by service name: the stack adds "ADDRESS SERVICE" lines to
each member's /etc/hosts (beside the network's own block of container
names, see runtime/network/hosts.py), rewritten in place as members come.

What the stack made is found again by label (com.docker.compose.project)
and by a small record, <state>/stacks/NAME.json, naming the networks it
created: `down` removes those containers and networks, then the record.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time

from ..runtime.errors import Conflict, ContainerError, NotFound, SpecError
from ..stack import PROJECT_LABEL, SERVICE_LABEL, Service, Stack

ALIASES = "# containerlab stack {stack}: services by name"
ALIASES_END = "# end of containerlab stack {stack}"


def _record_path(engine, name: str) -> str:
    return os.path.join(engine.state_root, "stacks", f"{name}.json")


def _read_record(engine, name: str) -> dict | None:
    try:
        with open(_record_path(engine, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_record(engine, name: str, record: dict) -> None:
    path = _record_path(engine, name)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(record, f)
    os.replace(path + ".tmp", path)


def members(engine, name: str, all: bool = True) -> list[dict]:
    """The stack's containers (state dicts), by its project label."""
    return [s for s in engine.ps(all=all) if (s.get("labels") or dict(
        tuple(kv) for kv in (s.get("spec") or {}).get("labels") or ())).get(PROJECT_LABEL) == name]


def spec_of(stack: Stack, service: Service):
    from ..runtime.spec import ContainerSpec

    labels = dict(service.labels) | {PROJECT_LABEL: stack.name, SERVICE_LABEL: service.name}
    return ContainerSpec(service.command, image=service.image, name=stack.container_name(service.name),
                         hostname=service.hostname, env=service.env, workdir=service.workdir, user=service.user,
                         mounts=service.mounts, detach=True, limits=service.limits,
                         network=stack.network_name(service.network), ports=service.ports, labels=labels)


def up(engine, stack: Stack, on_event=None) -> list[str]:
    """Start the stack; the container names, in start order.  on_event(text) hears each step."""
    say = on_event or (lambda text: None)
    if members(engine, stack.name):
        raise Conflict(f"stack {stack.name} is already up: `stack down {stack.name}` first")
    from .containers import run

    record = {"networks": [], "services": {s.name: stack.container_name(s.name) for s in stack.services}}
    started: list[str] = []
    try:
        existing = {n["name"] for n in _networks(engine, "list")}
        for network in {s.network for s in stack.services}:
            full = stack.network_name(network)
            if full not in existing:
                _networks(engine, "create", full)
                record["networks"].append(full)
                _write_record(engine, stack.name, record)
                say(f"network {full} created")
        _write_record(engine, stack.name, record)
        for service in stack.services:
            for dep, condition in service.depends_on:
                wait_condition(engine, stack, stack.service(dep), condition, say)
            box = run(engine, spec_of(stack, service))
            box.close()
            started.append(box.name)
            say(f"{box.name} started")
            refresh_aliases(engine, stack.name)
        return started
    except BaseException:
        down(engine, stack.name)
        raise


def _networks(engine, verb: str, *args):
    manager = engine.networks()
    try:
        return getattr(manager, verb)(*args)
    finally:
        manager.close()


def wait_condition(engine, stack: Stack, service: Service, condition: str, say) -> None:
    """Block until `service` meets a depends_on condition, or raise a one-line error."""
    name = stack.container_name(service.name)
    if condition == "service_started":
        return
    if condition == "service_completed_successfully":
        code = engine.wait(name)
        if code != 0:
            raise ContainerError(f"{name} exited with {code}: services that depend on it were not started")
        return
    if service.health is None:
        raise SpecError(f"{service.name} has no healthcheck: add one, or depend on it with service_started")
    wait_healthy(engine, name, service.health)
    say(f"{name} is healthy")


def check_health(engine, name: str, health) -> tuple[bool, str]:
    """Run the healthcheck once: (passed, its output)."""
    from .containers import exec_

    box = exec_(engine, name, list(health.command))
    try:
        result = box.wait(timeout=health.timeout)
    except TimeoutError:
        box.kill()
        box.wait()
        return False, f"timed out after {health.timeout:g} s"
    text = (result.stdout + result.stderr).decode(errors="replace").strip()
    return result.exit_code == 0, text


def wait_healthy(engine, name: str, health) -> None:
    deadline = time.monotonic() + health.start_period
    while time.monotonic() < deadline:
        time.sleep(0.05)
    last = ""
    for _ in range(health.retries):
        if engine.inspect(name).get("status") != "running":
            raise ContainerError(f"{name} ended before it was healthy: see `stack logs`")
        ok, last = check_health(engine, name, health)
        if ok:
            return
        time.sleep(health.interval)
    raise ContainerError(f"{name} is unhealthy after {health.retries} checks: {last.splitlines()[-1] if last else ''}")


def refresh_aliases(engine, name: str) -> None:
    """Write "ADDRESS SERVICE" for every running member into every member's hosts file,
    as a block of its own between two marker lines (the network's block is left as it is)."""
    running = [s for s in members(engine, name, all=False) if s.get("ip")]
    begin, end = ALIASES.format(stack=name), ALIASES_END.format(stack=name)
    block = [begin] + [f"{s['ip']}\t{s['labels'][SERVICE_LABEL]}" for s in running
                       if SERVICE_LABEL in (s.get("labels") or {})] + [end]
    for state in running:
        path = os.path.join(engine.store.dir(state["id"]), "hosts")
        try:
            with open(path, "r+") as f:  # in place: the bind mount pins the inode
                kept, inside = [], False
                for line in f.read().splitlines():
                    if line == begin:
                        inside = True
                    elif inside and line == end:
                        inside = False
                    elif not inside:
                        kept.append(line)
                f.seek(0)
                f.write("\n".join(kept + block) + "\n")
                f.truncate()
        except FileNotFoundError:
            pass  # it ended meanwhile


def down(engine, name: str, grace: float = 3.0) -> list[str]:
    """Remove the stack's containers and the networks it made; what was removed."""
    removed = []
    for state in members(engine, name):
        try:
            if state.get("status") == "running":
                engine.stop(state["id"], grace=grace)
            engine.rm(state["id"], force=True)
            removed.append(state.get("name") or state["id"][:12])
        except NotFound:
            pass  # removed meanwhile (auto-remove)
    record = _read_record(engine, name) or {}
    for network in record.get("networks", []):
        try:
            _networks(engine, "remove", network)
            removed.append(f"network {network}")
        except NotFound:
            pass
    try:
        os.unlink(_record_path(engine, name))
    except FileNotFoundError:
        if not removed:
            raise NotFound(f"no stack {name!r} here: `stack ps` lists the stacks that are up") from None
    return removed


def ps(engine, name: str):
    """The stack's containers as PsRows, in name order."""
    from .containers import PsRow

    return sorted((PsRow.from_state(s) for s in members(engine, name)), key=lambda row: row.name)


def logs(engine, name: str, follow: bool = False):
    """(service, stream, line) of every member, interleaved as they come (each line whole)."""
    rows = members(engine, name)
    if not rows:
        raise NotFound(f"no stack {name!r} here (or it has no containers)")
    lines: queue.Queue = queue.Queue()
    services = {s.get("name") or s["id"]: (s.get("labels") or {}).get(SERVICE_LABEL, s.get("name")) for s in rows}

    def pump(ref: str, service: str) -> None:
        pending = {"stdout": b"", "stderr": b""}
        cid = None
        while True:
            try:
                cid = _next_id(engine, ref, cid, follow)
                if cid is None:
                    break
                for stream, data in engine.logs(cid, follow=follow):
                    pending[stream] += data
                    *whole, pending[stream] = pending[stream].split(b"\n")
                    for line in whole:
                        lines.put((service, stream, line + b"\n"))
            except ContainerError:
                break  # removed while followed
            if not follow:
                break
        for stream, rest in pending.items():
            if rest:
                lines.put((service, stream, rest + b"\n"))
        lines.put(None)

    threads = [threading.Thread(target=pump, args=item, daemon=True) for item in services.items()]
    for thread in threads:
        thread.start()
    ended = 0
    while ended < len(threads):
        item = lines.get()
        if item is None:
            ended += 1
        else:
            yield item


def _next_id(engine, ref: str, last: str | None, follow: bool, grace: float = 2.0) -> str | None:
    """The id to follow under a member's name: the first, then one restarted after a failure
    (the Restarter starts it again within its poll), else None."""
    deadline = time.monotonic() + grace
    while True:
        state = engine.inspect(ref)
        if state["id"] != last:
            return state["id"]
        if not follow or not state.get("exit_code") or time.monotonic() > deadline:
            return None
        time.sleep(0.05)
