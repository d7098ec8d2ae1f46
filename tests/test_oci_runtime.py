"""containerlab-magic-runtime: the OCI runtime command line, driven as an OCI tool drives runc.

Every test runs the real command (`python -m containerlab_magic.oci.cli`) against a
bundle whose rootfs is the built-in busybox recipe, with its own --root; the
containers are the lab's (one start plan).  The module checks that nothing is
left: no container process (conftest), no shim of its root, no state.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from conftest import needs_root

from containerlab_magic.runtime.images.builtin import BusyboxImage

pytestmark = needs_root


@pytest.fixture(scope="module")
def rt(module_no_leaks):
    work = tempfile.mkdtemp(prefix="clab-oci-")
    root = os.path.join(work, "root")
    rootfs = os.path.join(work, "rootfs")
    BusyboxImage().build(rootfs)
    runtime = Runtime(root, work, rootfs)
    try:
        yield runtime
        assert runtime.list() == [], "containers left in the runtime's root"
        deadline = time.monotonic() + 10
        while runtime.shims() and time.monotonic() < deadline:
            time.sleep(0.1)  # (its daemon shim lingers 1 s after the last container)
        assert runtime.shims() == [], "the runtime's shim outlived its containers"
    finally:
        for pid in runtime.shims():
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(work)


class Runtime:
    def __init__(self, root: str, work: str, rootfs: str):
        self.root, self.work, self.rootfs = root, work, rootfs
        self.count = 0

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """The runtime's whole process.  Its stdout and stderr are files, not pipes: a created
        container writes to the caller's own streams (as runc's), so a pipe would not reach
        EOF while it lives."""
        env = dict(os.environ, CONTAINERLAB_DAEMON_LINGER="1")
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            ran = subprocess.run([sys.executable, "-m", "containerlab_magic.oci.cli", "--root", self.root, *args],
                                 stdout=out, stderr=err, text=True, timeout=timeout, env=env,
                                 stdin=subprocess.DEVNULL, cwd="/")
            out.seek(0)
            err.seek(0)
            ran.stdout, ran.stderr = out.read(), err.read()
        return ran

    def bundle(self, args: list[str], edit=None) -> str:
        """A bundle (config.json from `spec`, rootfs linked in) running `args`."""
        self.count += 1
        path = os.path.join(self.work, f"bundle{self.count}")
        os.mkdir(path)
        os.symlink(self.rootfs, os.path.join(path, "rootfs"))
        ran = self("spec", "--bundle", path)
        assert ran.returncode == 0, ran.stderr
        with open(os.path.join(path, "config.json")) as f:
            config = json.load(f)
        config["process"]["args"] = args
        if edit:
            edit(config)
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(config, f)
        return path

    def state(self, cid: str) -> dict:
        ran = self("state", cid)
        assert ran.returncode == 0, ran.stderr
        return json.loads(ran.stdout)

    def list(self) -> list[dict]:
        ran = self("list", "--format", "json")
        assert ran.returncode == 0, ran.stderr
        return json.loads(ran.stdout)

    def shims(self) -> list[int]:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if b"containerlab_magic.runtime.shim" in cmd and self.root.encode() in cmd:
                found.append(int(pid))
        return found


def test_run_prints_on_the_callers_stdio_and_returns_the_exit_code(rt):
    bundle = rt.bundle(["sh", "-c", "echo out; echo err >&2; hostname; id -u; exit 7"])
    ran = rt("run", "--bundle", bundle, "r1")
    assert ran.returncode == 7, ran.stderr
    assert ran.stdout.split() == ["out", "runc", "0"] and ran.stderr == "err\n"
    assert rt("state", "r1").returncode == 1  # run deletes it when it ends


def test_create_waits_for_start_and_state_follows_each_step(rt, tmp_path):
    bundle = rt.bundle(["sh", "-c", "echo started > /dev/stderr; exec sleep 30"])
    pid_file = tmp_path / "pid"
    ran = rt("create", "--bundle", bundle, "--pid-file", str(pid_file), "c1")
    assert ran.returncode == 0, ran.stderr
    pid = int(pid_file.read_text())
    state = rt.state("c1")
    assert (state["status"], state["pid"], state["bundle"], state["id"]) == ("created", pid, bundle, "c1")
    assert state["ociVersion"].startswith("1.")
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert not f.read().startswith(b"sleep"), "the process ran before start"
    assert rt("start", "c1").returncode == 0
    deadline = time.monotonic() + 5
    while True:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if f.read().startswith(b"sleep"):
                break
        assert time.monotonic() < deadline, "start did not start it"
        time.sleep(0.05)
    assert rt.state("c1")["status"] == "running"
    assert "start" in rt("start", "c1").stderr  # a second start is refused
    refused = rt("delete", "c1")
    assert refused.returncode == 1 and "not stopped: running" in refused.stderr
    assert rt("kill", "c1", "KILL").returncode == 0
    deadline = time.monotonic() + 5
    while rt.state("c1")["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert rt.state("c1")["pid"] == 0
    assert rt("delete", "c1").returncode == 0
    assert "does not exist" in rt("state", "c1").stderr


@pytest.mark.parametrize("sig", ["TERM", "SIGTERM", "15"])
def test_kill_takes_a_name_or_a_number(rt, sig):
    # (PID 1 of a PID namespace gets only the signals it handles: this one handles TERM)
    bundle = rt.bundle(["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done"])
    assert rt("run", "--detach", "--bundle", bundle, "k1").returncode == 0
    try:
        _wait_until_it_handles(rt.state("k1")["pid"], signal.SIGTERM)
        assert rt("kill", "k1", sig).returncode == 0
        deadline = time.monotonic() + 5
        while rt.state("k1")["status"] != "stopped":
            assert time.monotonic() < deadline, "TERM did not reach the container's PID 1"
            time.sleep(0.05)
    finally:
        rt("delete", "--force", "k1")
    bad = rt("kill", "nosuch", "TERM")
    assert bad.returncode == 1 and 'container "nosuch" does not exist' in bad.stderr


def _wait_until_it_handles(pid: int, sig: int, timeout: float = 5) -> None:
    """Until the shell has set its trap (SigCgt in /proc/PID/status, proc(5))."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/status") as f:
            caught = int(next(line for line in f if line.startswith("SigCgt:")).split()[1], 16)
        if caught & (1 << (sig - 1)):
            return
        time.sleep(0.02)
    raise AssertionError(f"PID {pid} never handled signal {sig}")


def test_delete_force_removes_a_created_container(rt):
    bundle = rt.bundle(["true"])
    assert rt("create", "--bundle", bundle, "f1").returncode == 0
    assert rt("delete", "--force", "f1").returncode == 0
    assert rt.list() == []


def test_an_id_in_use_is_refused_and_the_first_is_untouched(rt):
    bundle = rt.bundle(["sleep", "30"])
    assert rt("create", "--bundle", bundle, "same").returncode == 0
    try:
        again = rt("create", "--bundle", bundle, "same")
        assert again.returncode == 1 and "container with id exists: same" in again.stderr
        assert rt.state("same")["status"] == "created"
    finally:
        assert rt("delete", "--force", "same").returncode == 0


def _ns(kind):
    def edit(config):
        config["linux"]["namespaces"].append({"type": kind})
    return edit


def _set(path: str, value):
    def edit(config):
        node = config
        keys = path.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return edit


@pytest.mark.parametrize("edit, says", [
    (_ns("bogus"), 'linux.namespaces[6].type: \'bogus\': unknown namespace type'),
    (_set("root.path", "no-such-dir"), "root.path: "),
    (_set("process.args", []), "process.args: must be a non-empty list"),
    (_set("linux.sysctl", {"net.ipv4.ip_forward": "1"}), "linux.sysctl: not supported"),
    (_set("hooks", {"prestart": [{"path": "/bin/true"}]}), "hooks.prestart: hooks are not supported yet"),
    (_set("process.rlimits", [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]), "process.rlimits[0].type"),
    (_set("process.terminal", True), "process.terminal"),
    (_set("linux.uidMappings", [{"containerID": 0, "hostID": 1000, "size": 1}]), "linux.uidMappings"),
    (_set("mounts", [{"destination": "/data", "type": "nfs", "source": "x"}]), "mounts[0]: 'nfs' on /data"),
], ids=["namespace", "root", "args", "sysctl", "hooks", "rlimits", "terminal", "uidmap", "mount"])
def test_what_the_core_cannot_honour_is_refused_at_create_naming_the_field(rt, edit, says):
    bundle = rt.bundle(["true"], edit)
    ran = rt("create", "--bundle", bundle, "bad")
    assert ran.returncode == 1, ran
    assert says in ran.stderr and len(ran.stderr.strip().splitlines()) == 1, ran.stderr
    assert "Traceback" not in ran.stderr
    assert rt("state", "bad").returncode == 1 and rt.list() == []


def test_a_malformed_config_and_a_missing_bundle_are_one_line(rt):
    bundle = rt.bundle(["true"])
    with open(os.path.join(bundle, "config.json"), "w") as f:
        f.write("{not json")
    for args in (["create", "--bundle", bundle, "m1"], ["create", "--bundle", "/nonexistent", "m2"],
                 ["start", "ghost"], ["--systemd-cgroup", "state", "x"]):
        ran = rt(*args)
        assert ran.returncode == 1 and len(ran.stderr.strip().splitlines()) == 1, (args, ran.stderr)
        assert "Traceback" not in ran.stderr
    assert rt.list() == []


def test_limits_and_a_read_only_root_come_from_config(rt):
    def edit(config):
        config["linux"]["resources"].update({"memory": {"limit": 64 << 20}, "pids": {"limit": 20}})
    bundle = rt.bundle(["sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max "
                        "/sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null; "
                        "touch /x 2>/dev/null || echo read-only"], edit)
    ran = rt("run", "--bundle", bundle, "lim")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == [str(64 << 20), "20", "read-only"], ran.stdout


def test_features_and_spec(rt, tmp_path):
    features = json.loads(rt("features").stdout)
    assert "pid" in features["linux"]["namespaces"] and features["linux"]["seccomp"]["enabled"]
    assert rt("spec", "--bundle", str(tmp_path)).returncode == 0
    again = rt("spec", "--bundle", str(tmp_path))
    assert again.returncode == 1 and "exists" in again.stderr


def test_the_lab_cli_reaches_the_runtime_too(rt):
    ran = subprocess.run([sys.executable, "-m", "containerlab_magic", "runtime", "--root", rt.root, "list"],
                         capture_output=True, text=True, cwd="/", timeout=60)
    assert ran.returncode == 0 and ran.stdout.startswith("ID"), ran.stderr


def test_the_oci_seccomp_object_goes_through_the_labs_seccomp_layer(rt):
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
    bundle = rt.bundle(["sh", "-c", "mkdir /tmp/x 2>/dev/null && echo made || echo refused"],
                       _set("linux.seccomp", profile))
    ran = rt("run", "--bundle", bundle, "sc1")
    assert ran.returncode == 0 and ran.stdout == "refused\n", ran
    plain = rt.bundle(["sh", "-c", "mkdir /tmp/x && echo made"])  # no seccomp object: no filter
    assert rt("run", "--bundle", plain, "sc2").stdout == "made\n"
