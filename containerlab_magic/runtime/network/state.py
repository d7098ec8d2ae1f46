"""Persistent network state: one JSON file under a lock, shared by processes.

Everything the network layer has made (networks, their bridges, each
container's address, veth and published ports) is written to
``STATE_ROOT/networks/state.json`` while holding ``flock(2)`` on
``STATE_ROOT/networks/lock``, so the CLI, several shims and `gc` after a crash
all see one truth.  The file is replaced atomically (write, fsync, rename), so
a `kill -9` in the middle leaves the old or the new version, never half.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from typing import Iterator

from ..errors import RuntimeFailure

VERSION = 1
ALIAS_PREFIX = "containerlab_magic"


def empty_state() -> dict:
    return {"version": VERSION, "networks": {}, "containers": {}, "spares": {}}


class NetworkState:
    """The state directory of one NetworkManager (cheap: touches no file until used)."""

    def __init__(self, state_root: str) -> None:
        self.root = os.path.abspath(state_root)
        self.dir = os.path.join(self.root, "networks")
        self.path = os.path.join(self.dir, "state.json")
        self.lock_path = os.path.join(self.dir, "lock")
        # A short tag naming this state root inside kernel objects (interface
        # aliases), so that gc can tell our links from another root's.
        self.tag = hashlib.sha1(self.root.encode()).hexdigest()[:8]

    def read(self) -> dict:
        try:
            with open(self.path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return empty_state()
        data.setdefault("networks", {})
        data.setdefault("containers", {})
        data.setdefault("spares", {})  # veths plugged ahead of need (NetworkManager.reserve_spare)
        return data

    def write(self, data: dict) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, self.path)

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict]:
        """Hold the lock, yield the state; write it back if the block succeeds."""
        os.makedirs(self.dir, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = self.read()
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:
                self.write(data)
        finally:
            os.close(fd)  # closing drops the flock

    # Names of kernel objects -------------------------------------------------

    def bridge_alias(self, network: str) -> str:
        return f"{ALIAS_PREFIX}:{self.tag}:net:{network}"

    def veth_alias(self, container_id: str) -> str:
        return f"{ALIAS_PREFIX}:{self.tag}:ctr:{container_id}"

    def veth_name(self, container_id: str) -> str:
        # IFNAMSIZ is 16 with the NUL: 'clab' + 10 hex digits = 14 characters.
        return "clab" + hashlib.sha1(f"{self.tag}:{container_id}".encode()).hexdigest()[:10]

    def links(self) -> dict[str, str]:
        """The host's links this state root made (bridges, veths): name -> alias (sysfs ifalias)."""
        found = {}
        for name in os.listdir("/sys/class/net"):
            try:
                with open(f"/sys/class/net/{name}/ifalias") as f:
                    alias = f.read().strip()
            except OSError:
                continue  # (gone meanwhile)
            if f":{self.tag}:" in alias:
                found[name] = alias
        return found

    def bridge_names(self, network: str) -> list[str]:
        """Candidate bridge names, the readable one first: clab-<name>, clab-<hash>."""
        hashed = "clab-" + hashlib.sha1(f"{self.tag}:{network}".encode()).hexdigest()[:10]
        readable = "clab-" + network
        return [readable, hashed] if len(readable) <= 15 else [hashed]


def _lock_dir() -> str:
    """The lab's own 0700 directory for host-wide locks: not the world-writable /run/lock,
    where another user could plant the lock file first (or a symlink in its place)."""
    base = "/run" if os.geteuid() == 0 else (os.environ.get("XDG_RUNTIME_DIR") or "/tmp")
    path = os.path.join(base, f"containerlab-host-{os.geteuid()}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.lstat(path)
    if info.st_uid != os.geteuid() or info.st_mode & 0o077 or not os.path.isdir(path) or os.path.islink(path):
        raise RuntimeFailure(f"{path} is not a private directory of ours: remove it and try again")
    return path


@contextlib.contextmanager
def host_lock() -> Iterator[None]:
    """Serialise choices that are global to the host (bridge names, subnets)
    between state roots: two labs must never pick the same subnet at once."""
    fd = os.open(os.path.join(_lock_dir(), "network.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
