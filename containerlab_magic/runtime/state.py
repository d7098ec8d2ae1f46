"""The state directory: one folder per container, readable by any process.

    <state_root>/containers/<id>/state.json   what the owning shim knows
    <state_root>/containers/<id>/log          detached output, docker's framing
    <state_root>/containers/<id>/hosts        bind-mounted as /etc/hosts
    <state_root>/names/<name> -> <id>         name index (a symlink: atomic claim)

A process is identified by PID *and* start time (field 22 of /proc/PID/stat),
so a recycled PID is never mistaken for a container or a shim.
"""

from __future__ import annotations

import json
import os
import time
from enum import Enum
from typing import Iterator

from .errors import Conflict, NotFound


class Status(str, Enum):
    """A container's status (a str, so state.json keeps plain strings)."""

    SPARE = "spare"  # made ahead of need by a shim, not yet any container
    CREATING = "creating"  # its start plan is running
    CREATED = "created"  # made, PID 1 waiting for `start` (the OCI runtime's create: oci/)
    RUNNING = "running"
    PAUSED = "paused"  # running, frozen (the state file says running; `paused` marks it)
    EXITING = "exiting"  # its PID 1 ended; its shim is recording the end
    EXITED = "exited"
    DEAD = "dead"  # its shim died: nobody recorded the end (gc or rm -f cleans it)

    def __str__(self) -> str:
        return self.value


def proc_start_time(pid: int) -> int | None:
    """Start time of PID in clock ticks since boot, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may hold spaces and ')': fields start after the last ')'.
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None  # a zombie has finished running
    return int(fields[19])


def alive(pid: int | None, start: int | None) -> bool:
    return bool(pid) and start is not None and proc_start_time(pid) == start


def _private(path: str):
    """A new file only its owner reads (0600: a state holds the spec, its environment included)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600), "w")


class StateStore:
    def __init__(self, root: str):
        self.root = root
        self.containers = os.path.join(root, "containers")
        self.names = os.path.join(root, "names")
        os.makedirs(self.containers, mode=0o711, exist_ok=True)
        os.makedirs(self.names, mode=0o700, exist_ok=True)  # who runs what: the owner's business
        # Cgroups this state root made and has not yet removed: gc's list, so that it
        # never touches groups of another state root (another lab, a benchmark).
        self.cgroup_ledger = os.path.join(root, "cgroups")
        os.makedirs(self.cgroup_ledger, mode=0o700, exist_ok=True)

    def dir(self, cid: str) -> str:
        return os.path.join(self.containers, cid)

    def create(self, cid: str, name: str, owner: dict) -> str:
        """Make the container's folder and claim its name, or raise Conflict."""
        self.claim(cid, name)
        try:
            return self.make(cid, {"id": cid, "name": name, "status": Status.CREATING, **owner})
        except BaseException:
            self.release(cid, name)
            raise

    def create_spare(self, cid: str, owner: dict) -> str:
        """A folder made ahead of need (see Shim.prepare_spare); gc knows it by its status
        (and, made aside, by its name: a shim killed before its state.json was written)."""
        return self.make(cid, {"id": cid, "status": Status.SPARE, **owner}, aside_prefix=".new-spare-")

    def make(self, cid: str, state: dict, aside_prefix: str = ".new-") -> str:
        """The folder appears with its state.json already in it (made aside, then renamed),
        so whoever finds it, gc included, can tell whose it is."""
        path = self.dir(cid)
        aside = os.path.join(self.containers, f"{aside_prefix}{cid}")
        os.mkdir(aside, 0o700)
        with _private(os.path.join(aside, "state.json")) as f:
            json.dump(state, f)
        os.rename(aside, path)
        return path

    def claim(self, cid: str, name: str) -> None:
        """Point `name` at `cid`, or raise Conflict if a live container holds it."""
        link = os.path.join(self.names, name)
        try:
            os.symlink(cid, link)
        except FileExistsError:
            owner = os.readlink(link)
            if os.path.isdir(self.dir(owner)):
                raise Conflict(
                    f"the name {name!r} is already in use by container {owner[:12]}: "
                    f"remove it (containerlab-magic rm -f {name}) or choose another --name"
                ) from None
            os.unlink(link)  # stale claim from a crash
            os.symlink(cid, link)

    def note_cgroup(self, cid: str) -> None:
        os.close(os.open(os.path.join(self.cgroup_ledger, cid), os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))

    def forget_cgroup(self, cid: str) -> None:
        try:
            os.unlink(os.path.join(self.cgroup_ledger, cid))
        except FileNotFoundError:
            pass

    def cgroups(self) -> list[str]:
        return sorted(os.listdir(self.cgroup_ledger))

    def write(self, cid: str, state: dict) -> None:
        path = os.path.join(self.dir(cid), "state.json")
        tmp = path + ".tmp"
        with _private(tmp) as f:
            json.dump(state, f)
        os.rename(tmp, path)

    def read(self, cid: str) -> dict | None:
        try:
            with open(os.path.join(self.dir(cid), "state.json")) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return None

    def ids(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.containers) if not n.startswith("."))
        except FileNotFoundError:
            return []

    def unfinished(self) -> list[str]:
        """Folders a crash left half made (see make), by path."""
        try:
            return [os.path.join(self.containers, n) for n in os.listdir(self.containers) if n.startswith(".new-")]
        except FileNotFoundError:
            return []

    def all(self, spares: bool = False) -> Iterator[dict]:
        for cid in self.ids():
            state = self.read(cid)
            if state is not None and (spares or state.get("status") != "spare"):
                yield state

    def resolve(self, ref: str) -> str:
        """A name, a full id or a unique id prefix -> the id."""
        try:
            cid = os.readlink(os.path.join(self.names, ref))
            if os.path.isdir(self.dir(cid)):
                return cid
        except (FileNotFoundError, OSError):
            pass
        if ref and "/" not in ref:
            matches = [cid for cid in self.ids() if cid.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise Conflict(f"{ref!r} matches {len(matches)} containers: give more of the id or the name")
        raise NotFound(f"no such container: {ref} (see `containerlab-magic ps -a`)")

    def release(self, cid: str, name: str | None) -> None:
        """Free the container's name (if it still points at this container)."""
        if name:
            link = os.path.join(self.names, name)
            try:
                if os.readlink(link) == cid:
                    os.unlink(link)
            except OSError:
                pass

    def remove(self, cid: str, name: str | None = None) -> None:
        if name is None:
            state = self.read(cid) or {}
            name = state.get("name")
        self.release(cid, name)
        import shutil  # (here: the CLI's run path imports this module, and never removes)

        shutil.rmtree(self.dir(cid), ignore_errors=True)


def wait_for(predicate, timeout: float, interval: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def settle(state: dict) -> dict:
    """A state as the world is now (checked by pid and start time): a 'running' container
    whose PID 1 is gone is 'exiting' while its shim records the end, 'dead' if no shim will."""
    state = dict(state)
    if state.get("status") in (Status.RUNNING, Status.CREATED) and not alive(state.get("pid"), state.get("pid_start")):
        owned = alive(state.get("shim_pid"), state.get("shim_start"))
        state["status"] = (Status.EXITING if owned else Status.DEAD).value
    return state
