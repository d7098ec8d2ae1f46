"""gc and orphans: what crashes left behind, found from the state directory.

A container whose shim died (kill -9) is `dead` once its PID 1 is gone (by pid
and start time); `rm -f` and `gc` free its cgroup, its network record and its
state.  gc also removes half-made state folders, stale names, and cgroups the
ledger names but no container owns.
"""

from __future__ import annotations

import json
import os
import signal
import time

from .container import _signal_pid
from .state import Status, alive, wait_for


class CleanupVerbs:
    """Mixed into Engine: needs self.store, self.state_root, self.cgroups."""

    def reap_orphans(self) -> list[str]:
        """Containers (and spares) whose shim died (kill -9, OOM, a crashed kernel): their
        processes, cgroups, network records and state.  A private engine does this when it
        first starts its shim (Engine._request), so a crashed kernel's leftovers go with
        the next kernel; `gc` does it and the rest."""
        removed = []
        for state in list(self.store.all(spares=True)):
            if state.get("status") in (Status.RUNNING, Status.SPARE, Status.CREATING) and not alive(state.get("shim_pid"),
                                                                                      state.get("shim_start")):
                self._reap_orphan(state["id"], state)
                what = "spare slot" if state["status"] == Status.SPARE else f"container {state.get('name')}"
                removed.append(f"{what} ({state['id'][:12]})")
        return removed

    def gc(self) -> list[str]:
        """Remove what crashes left behind: orphaned containers, their cgroups, stale names."""
        removed = self.reap_orphans()
        for cid in self.store.ids():
            if self.store.read(cid) is None and not self._young(cid):
                self.store.remove(cid)
                removed.append(f"state directory {cid[:12]}")
        for path in self.store.unfinished():  # its maker died before renaming it into place
            try:
                with open(os.path.join(path, "state.json")) as f:
                    owner = json.load(f)
            except (OSError, ValueError):
                owner = {}
            try:
                orphaned = not alive(owner.get("shim_pid"), owner.get("shim_start"))
                if orphaned or time.time() - os.stat(path).st_mtime > 30:
                    import shutil  # gc only: off the CLI's run path

                    shutil.rmtree(path, ignore_errors=True)
                    name = os.path.basename(path)
                    short = name.rsplit("-", 1)[-1][:12]
                    spare = owner.get("status") == Status.SPARE or name.startswith(".new-spare-")
                    removed.append(f"spare slot ({short}, unfinished)" if spare
                                   else f"unfinished state directory {short}")
            except FileNotFoundError:
                pass
        known = set(self.store.ids())
        for cid in self.store.cgroups():  # only groups this state root made
            if cid in known:
                continue
            group = self.cgroups.open(cid) if self.cgroups is not None else None
            if group is not None:
                group.kill_all()
                group.remove()
                removed.append(f"cgroup {cid[:12]}")
            self.store.forget_cgroup(cid)
        try:
            from .network import NetworkManager
        except ImportError:
            NetworkManager = None
        if NetworkManager is not None and os.path.isdir(os.path.join(self.state_root, "networks")):
            NetworkManager(self.state_root).gc(set(self.store.ids()))
        for name in os.listdir(self.store.names):
            link = os.path.join(self.store.names, name)
            if not os.path.isdir(self.store.dir(os.readlink(link))):
                os.unlink(link)
                removed.append(f"name {name}")
        if self.cgroups is not None:
            self.cgroups.release()  # the lab's parent groups, if no engine has a group in them
        removed += self._forget_dead_builds()
        return removed

    def _forget_dead_builds(self) -> list[str]:
        """Temporary image names of builds killed midway (`image prune` then frees their layers)."""
        if not os.path.isdir(os.path.join(self.data_root, "images", "oci")):
            return []  # no image was ever pulled or built: nothing to look at (and nothing made)
        from .images import ImageStore
        from .images.build import forget_dead_builds

        return [f"temporary image {name}" for name in forget_dead_builds(ImageStore(self.data_root).oci)]


    def _young(self, cid: str) -> bool:
        """A state dir being created right now has no state.json yet."""
        try:
            return time.time() - os.stat(self.store.dir(cid)).st_mtime < 30
        except FileNotFoundError:
            return False

    def _reap_orphan(self, cid: str, state: dict) -> None:
        if alive(state.get("pid"), state.get("pid_start")):
            _signal_pid(state["pid"], state.get("pid_start"), signal.SIGKILL)
            wait_for(lambda: not alive(state["pid"], state.get("pid_start")), 10, 0.01)
        if state.get("cgroup") and self.cgroups is not None:
            group = self.cgroups.open(cid)
            if group is not None:
                group.kill_all()
                group.remove()
            self.store.forget_cgroup(cid)
        if state.get("network") not in (None, "none", "host") and os.path.isdir(
                os.path.join(self.state_root, "networks")):
            from .network import NetworkManager

            nm = NetworkManager(self.state_root)
            try:
                nm.detach(cid)
            finally:
                nm.close()
        self.store.remove(cid, state.get("name"))
