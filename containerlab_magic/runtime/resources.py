"""Verbs on a running container's cgroup and network: stats, limits, update, pause.

Usage is read from the container's cgroup (cgroups/) and, for a bridge network,
from the host end of its veth (sysfs counters: what the host end sends, the
container receives).  Live updates write the cgroup's files and note the new
limits beside the state (limits.json).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Iterator

from .errors import Conflict, HostUnsupported, NotFound
from .spec import ContainerSpec, Limits
from .state import Status, settle


class ResourceVerbs:
    """Mixed into Engine: needs self.store, self.state_root, self.cgroups."""

    
    def _group(self, ref: str, verb: str):
        cid = self.store.resolve(ref)
        state = settle(self.store.read(cid) or {})
        if state.get("status") != Status.RUNNING:
            raise Conflict(f"container {ref} is not running: {verb} needs a running container")
        group = self.cgroups.open(cid) if (state.get("cgroup") and self.cgroups is not None) else None
        if group is None:
            raise HostUnsupported(f"container {ref} has no cgroup: {verb} needs cgroups (see `containerlab-magic doctor`)")
        return cid, state, group

    def stats(self, ref: str) -> dict:
        """Usage now against the limits: memory (now, peak, limit), CPU time, throttling, pids, OOM kills, I/O.
        A container without a cgroup (rootless, none delegated) is measured from /proc (procstats.py)."""
        try:
            cid, state, group = self._group(ref, "stats")
        except HostUnsupported:
            return self._proc_stats(ref)
        usage = vars(group.stats()).copy()
        limits = self.limits(cid)
        usage.update(id=cid, name=state.get("name"), time=time.time(), cpus_limit=limits.cpus,
                     paused=self._paused(cid), cgroup_version=self.cgroups.version, source="cgroup")
        if usage.get("memory_limit") is None and limits.memory:
            usage["memory_limit"] = limits.memory
        usage.update(self._network_usage(cid, state))
        return usage

    def _proc_stats(self, ref: str) -> dict:
        from . import procstats

        cid = self.store.resolve(ref)
        state = settle(self.store.read(cid) or {})
        limits = self.limits(cid)
        usage = vars(procstats.usage(state["pid"], limits)).copy()
        usage.update(id=cid, name=state.get("name"), time=time.time(), cpus_limit=None, paused=False,
                     cgroup_version=None, source=procstats.SOURCE)
        usage.update(self._network_usage(cid, state))
        return usage

    def network_usage(self, ref: str) -> dict:
        """Network, address, eth0's bytes and shaping of a container ({} if on none or host)."""
        cid = self.store.resolve(ref)
        return self._network_usage(cid, self.store.read(cid) or {})

    def _network_usage(self, cid: str, state: dict) -> dict:
        """Bytes through eth0 and its shaping, for a container on a bridge network (or
        sharing one's namespace).  The counters are the host end's, read from sysfs:
        what the host end sends, the container receives."""
        network = state.get("network") or "none"
        if network in ("none", "host") or not os.path.isdir(os.path.join(self.state_root, "networks")):
            return {}
        from .network.state import NetworkState

        with NetworkState(self.state_root).locked() as st:
            record = st["containers"].get(cid)
            if record and record.get("joined"):
                record = st["containers"].get(record["joined"])
            record = dict(record) if record else None
        if not record or not record.get("veth"):
            return {}
        usage = {"network": record["network"], "ip": record["ip"], "net_shape": record.get("shape")}
        for ours, theirs in (("net_rx_bytes", "tx_bytes"), ("net_tx_bytes", "rx_bytes")):
            try:
                with open(f"/sys/class/net/{record['veth']}/statistics/{theirs}") as f:
                    usage[ours] = int(f.read())
            except (OSError, ValueError):
                usage[ours] = None
        return usage

    def sample(self, ref: str, interval: float = 0.5) -> Iterator[dict]:
        """Stats every `interval` seconds, with CPU % since the previous sample, until it ends."""
        previous = None
        while True:
            try:
                current = self.stats(ref)
            except (Conflict, NotFound):
                return
            if previous is not None and current.get("cpu_usage_ns") is not None:
                wall = current["time"] - previous["time"]
                used = current["cpu_usage_ns"] - (previous.get("cpu_usage_ns") or 0)
                current["cpu_percent"] = 100.0 * used / 1e9 / wall if wall > 0 else 0.0
            else:
                current["cpu_percent"] = None
            yield current
            previous = current
            time.sleep(interval)

    def limits(self, ref: str) -> Limits:
        """The container's limits now: its spec, with live updates applied."""
        cid = self.store.resolve(ref)
        state = self.store.read(cid) or {}
        spec = ContainerSpec.from_json(state["spec"]) if state.get("spec") else None
        current = dataclasses.asdict(spec.limits) if spec else {}
        try:
            with open(os.path.join(self.store.dir(cid), "limits.json")) as f:
                current.update(json.load(f))
        except FileNotFoundError:
            pass
        return Limits(**current)

    def update(self, ref: str, limits: Limits | None = None, *, net_rate: str | None = None,
               net_delay: str | None = None, net_loss: str | None = None) -> tuple[Limits, Limits]:
        """Change limits of a running container; returns (before, after)."""
        before = self.limits(ref)
        after = before
        if limits is not None and limits.any_cgroup_limit:
            cid, state, group = self._group(ref, "update")
            changed = {k: v for k, v in dataclasses.asdict(limits).items() if v is not None}
            merged = dataclasses.asdict(before)
            merged.update(changed)
            if "memory" in changed and "memory_swap" not in changed and before.memory_swap is None:
                merged["memory_swap"] = None  # swap stays disabled at the new memory limit
            after = Limits(**merged)  # validates the combination
            group.update(limits)
            with open(os.path.join(self.store.dir(cid), "limits.json.tmp"), "w") as f:
                json.dump(dataclasses.asdict(after), f)
            os.rename(os.path.join(self.store.dir(cid), "limits.json.tmp"),
                      os.path.join(self.store.dir(cid), "limits.json"))
        if net_rate or net_delay or net_loss:
            cid = self.store.resolve(ref)
            from .network import NetworkManager

            nm = NetworkManager(self.state_root)
            try:
                nm.shape(cid, net_rate, net_delay, net_loss, keep=True)  # what is not given stays
            finally:
                nm.close()
        return before, after

    def pause(self, ref: str) -> None:
        """Freeze every process of the container (the freezer cgroup)."""
        cid, _, group = self._group(ref, "pause")
        group.freeze()
        open(os.path.join(self.store.dir(cid), "paused"), "w").close()

    def unpause(self, ref: str) -> None:
        cid, _, group = self._group(ref, "unpause")
        group.thaw()
        try:
            os.unlink(os.path.join(self.store.dir(cid), "paused"))
        except FileNotFoundError:
            pass

    def _paused(self, cid: str) -> bool:
        return paused(self.store, cid)


def paused(store, cid: str) -> bool:
    """Whether `pause` froze the container (its marker in the state directory)."""
    return os.path.exists(os.path.join(store.dir(cid), "paused"))
