"""Run a command in an emulated pod with runc, and remove everything runc made.

runc keeps each container's state under its --root; `runc run` in the
foreground deletes the container when the command exits, and `runc delete -f ID`
(by id, never by name pattern) cleans up after a timeout.  runc makes the pod's
cgroups under /clabpod/ID in every hierarchy and removes ID; the empty
/clabpod parents are removed here when no other pod uses them.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

from . import bundle, profiles

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def why_not() -> str | None:
    """Why the pod emulation cannot run here, or None."""
    if os.geteuid() != 0:
        return "the pod emulation needs root (runc)"
    if not shutil.which("runc"):
        return "runc is not installed (apt-get install runc)"
    if not profiles.available():
        return f"{profiles.CONTAINERS_COMMON} is missing (apt-get install golang-github-containers-common)"
    return None


def python_binds() -> tuple[tuple[str, str], ...]:
    """This interpreter's prefix and the checkout, read-only, at the same paths inside."""
    prefixes = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}
    binds = [(p, p) for p in sorted(prefixes) if not p.startswith("/usr")]  # /usr is bound already
    return (*binds, (CHECKOUT, "/src"))


def python_argv(*args: str) -> list[str]:
    return [os.path.realpath(sys.executable), *args]


def run(pod: bundle.Pod, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run argv in a fresh pod (a new bundle and runc state each time); the pod is gone after."""
    pod_id = f"clabpod-{uuid.uuid4().hex[:10]}"
    scratch = tempfile.mkdtemp(prefix="clab-pod-")
    os.chmod(scratch, 0o711)  # traversable by a pod with its own user namespace, not listable
    pod = bundle.Pod(**{**pod.__dict__, "pod_id": pod_id,
                        "binds": python_binds() + pod.binds,
                        "env": ("PYTHONPATH=/src", "PYTHONDONTWRITEBYTECODE=1", *pod.env)})
    state = os.path.join(scratch, "state")
    path = bundle.write(pod, os.path.join(scratch, "bundle"), argv)
    try:
        return subprocess.run(["runc", "--root", state, "run", "--bundle", path, pod_id],
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    finally:
        subprocess.run(["runc", "--root", state, "delete", "--force", pod_id], capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)
        _remove_cgroup_parents(pod_id)


def _remove_cgroup_parents(pod_id: str) -> None:
    for leftover in glob.glob(f"/sys/fs/cgroup/*/clabpod/{pod_id}") + glob.glob(f"/sys/fs/cgroup/clabpod/{pod_id}"):
        try:
            os.rmdir(leftover)
        except OSError:
            pass
    for parent in glob.glob("/sys/fs/cgroup/*/clabpod") + glob.glob("/sys/fs/cgroup/clabpod"):
        try:
            os.rmdir(parent)  # fails while another pod's group is inside: then it is not ours to remove
        except OSError:
            pass
