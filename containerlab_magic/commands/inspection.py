"""`inspect NAME`: a container as docker names things (a subset of `docker inspect`).

Built from the container's state file (what its shim recorded) and its spec,
with limits changed since start (`update`) taken from the Engine.  Fields
docker has and this lab does not (restart policies, log drivers) are left
out rather than faked.
"""

from __future__ import annotations

import time

from ..runtime.errors import Conflict

DOCKER_STATUS = {"running": "running", "exited": "exited", "exiting": "exited", "dead": "dead",
                 "creating": "created", "created": "created"}


def _iso(stamp: float | None) -> str:
    """Seconds since the epoch -> RFC 3339 in UTC, as docker; zero time when unknown."""
    if not stamp:
        return "0001-01-01T00:00:00Z"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f".{int(stamp % 1 * 1e9):09d}Z"


def _port_bindings(ports: list[dict]) -> dict:
    bindings: dict[str, list] = {}
    for p in ports:
        bindings.setdefault(f"{p['container_port']}/{p['protocol']}", []).append(
            {"HostIp": p["host_ip"], "HostPort": str(p["host_port"])})
    return bindings


def _state(state: dict, running: bool, paused: bool) -> dict:
    return {
        "Status": "paused" if paused else DOCKER_STATUS.get(state.get("status"), state.get("status")),
        "Running": running, "Paused": paused, "Pid": state.get("pid") if running else 0,
        "ExitCode": state.get("exit_code") or 0, "OOMKilled": bool(state.get("oom_killed")),
        "StartedAt": _iso(state.get("created")), "FinishedAt": _iso(state.get("finished")),
    }


def _host_config(spec, limits) -> dict:
    return {
        "Memory": limits.memory or 0, "MemorySwap": limits.memory_swap or 0,
        "NanoCpus": int(round((limits.cpus or 0) * 1e9)), "CpuShares": limits.cpu_shares or 0,
        "CpusetCpus": limits.cpuset_cpus or "", "PidsLimit": limits.pids_limit,
        "BlkioWeight": limits.blkio_weight or 0, "NetworkMode": spec.network,
        "PortBindings": _port_bindings([vars(p) for p in spec.ports]),
        "Binds": [f"{m.source}:{m.target}" + (":ro" if m.read_only else "") for m in spec.mounts],
        "ReadonlyRootfs": spec.read_only, "Privileged": spec.privileged, "CapAdd": list(spec.cap_add),
        "CapDrop": list(spec.cap_drop), "AutoRemove": spec.auto_remove, "Init": spec.init,
        "SecurityOpt": [f"no-new-privileges={str(spec.no_new_privileges).lower()}"]
        + (["seccomp=unconfined" if spec.seccomp == "unconfined" else "seccomp=<profile>"] if spec.seccomp else []),
    }


def _network_settings(state: dict, spec, running: bool) -> dict:
    ip = (state.get("ip") or "") if running else ""
    networks = {}
    if spec.on_bridge:
        networks[spec.network] = {"IPAddress": ip}
    return {"IPAddress": ip, "Ports": _port_bindings([vars(p) for p in spec.ports]) if running else {},
            "Networks": networks}


def inspect(engine, ref: str) -> dict:
    """One container's document, JSON-ready."""
    from ..runtime.spec import ContainerSpec

    state = engine.inspect(ref)
    if not state.get("spec"):
        raise Conflict(f"container {ref} is still being created: inspect it again in a moment")
    spec = ContainerSpec.from_json(state["spec"])
    running = state.get("status") == "running"
    limits = engine.limits(state["id"]) if running else spec.limits
    return {
        "Id": state["id"],
        "Name": state.get("name") or "",
        "Created": _iso(state.get("created")),
        "State": _state(state, running, running and _paused(engine, state["id"])),
        "Config": {
            "Image": spec.image, "Cmd": list(spec.command), "Env": [f"{k}={v}" for k, v in spec.environment.items()],
            "Hostname": state.get("hostname") or spec.hostname or "", "Labels": dict(spec.labels),
            "WorkingDir": spec.workdir, "User": spec.user or "", "Tty": spec.tty, "OpenStdin": spec.interactive,
        },
        "HostConfig": _host_config(spec, limits),
        "NetworkSettings": _network_settings(state, spec, running),
        "Mounts": [{"Type": "bind", "Source": m.source, "Destination": m.target, "Mode": "ro" if m.read_only else "",
                    "RW": not m.read_only} for m in spec.mounts],
    }


def _paused(engine, cid: str) -> bool:
    """Engine.ps knows whether a running container is frozen."""
    return any(row.get("paused") for row in engine.ps(all=False) if row["id"] == cid)
