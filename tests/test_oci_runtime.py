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
    (_set("hooks", {"createContainer": [{"path": "/bin/true"}]}), "hooks.createContainer: hooks run in the"),
    (_set("process.rlimits", [{"type": "RLIMIT_BOGUS", "hard": 1024, "soft": 1024}]), "process.rlimits[0].type"),
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


# ---- exec, ps, pause/resume, update: verbs on a running container -----------------------------------


@pytest.fixture
def running(rt):
    """A detached container whose PID 1 sleeps; deleted (forced) after the test."""
    name = f"live{rt.count}"
    bundle = rt.bundle(["sleep", "300"])
    ran = rt("run", "--detach", "--bundle", bundle, name)
    assert ran.returncode == 0, ran.stderr
    try:
        yield name
    finally:
        assert rt("delete", "--force", name).returncode == 0


def test_exec_runs_in_the_container_on_the_callers_stdio_with_its_exit_code(rt, running):
    ran = rt("exec", "-e", "FOO=bar", "--cwd", "/tmp", running, "sh", "-c",
             "echo $FOO; pwd; hostname; echo err >&2; exit 3")
    assert ran.returncode == 3, ran.stderr
    assert ran.stdout.split() == ["bar", "/tmp", "runc"] and ran.stderr == "err\n"
    pid1 = rt.state(running)["pid"]
    ran = rt("exec", running, "readlink", "/proc/1/ns/pid")
    with open(f"/proc/{pid1}/cmdline", "rb") as f:
        assert f.read().startswith(b"sleep")
    assert ran.stdout.strip() == os.readlink(f"/proc/{pid1}/ns/pid"), "exec is not in the container's PID namespace"


def test_exec_process_file_gives_args_env_cwd_and_user(rt, running, tmp_path):
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["sh", "-c", "echo $GREETING; pwd; id -u; id -g"], "cwd": "/etc",
                                   "env": ["PATH=/bin:/usr/bin", "GREETING=hi"], "user": {"uid": 1000, "gid": 1001},
                                   "terminal": False, "noNewPrivileges": True}))
    ran = rt("exec", "--process", str(process), running)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["hi", "/etc", "1000", "1001"]
    process.write_text(json.dumps({"args": ["sh", "-c", "ulimit -n; ulimit -Hn; id -G"], "user": {
        "uid": 0, "gid": 0, "additionalGids": [5, 44]}, "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 90, "soft": 9}]}))
    ran = rt("exec", "--process", str(process), running)
    assert ran.returncode == 0 and ran.stdout.split() == ["9", "90", "0", "5", "44"], ran
    process.write_text(json.dumps({"args": ["true"], "apparmorProfile": "x"}))
    refused = rt("exec", "--process", str(process), running)
    assert refused.returncode == 1 and f"{process}: process.apparmorProfile" in refused.stderr, refused.stderr
    process.write_text("[1, 2")
    refused = rt("exec", "--process", str(process), running)
    assert refused.returncode == 1 and "malformed JSON" in refused.stderr
    for bad in (["exec", "-t", running, "sh"], ["exec", running], ["exec", "ghost", "true"],
                ["exec", "-e", "NOEQUALS", running, "true"]):
        ran = rt(*bad)
        assert ran.returncode == 1 and len(ran.stderr.strip().splitlines()) == 1, (bad, ran.stderr)


def test_exec_detached_outlives_the_runtime_process_and_ps_lists_it(rt, running, tmp_path):
    pid_file = tmp_path / "exec.pid"
    ran = rt("exec", "--detach", "--pid-file", str(pid_file), running, "sleep", "200")
    assert ran.returncode == 0, ran.stderr
    pid = int(pid_file.read_text())
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sleep", b"200"], "the detached exec ended with its caller"
    pid1 = rt.state(running)["pid"]
    listed = rt("ps", "--format", "json", running)
    assert listed.returncode == 0, listed.stderr
    assert set(json.loads(listed.stdout)) == {pid1, pid}
    table = rt("ps", running)
    assert table.stdout.splitlines()[0].split() == ["PID", "USER", "TIME", "CMD"]
    assert any(line.split()[0] == str(pid) and line.endswith("sleep 200") for line in table.stdout.splitlines())


def test_exec_in_a_created_container_is_refused(rt):
    bundle = rt.bundle(["sleep", "30"])
    assert rt("create", "--bundle", bundle, "notyet").returncode == 0
    try:
        ran = rt("exec", "notyet", "true")
        assert ran.returncode == 1 and "cannot exec in a created container" in ran.stderr
    finally:
        assert rt("delete", "--force", "notyet").returncode == 0


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_pause_freezes_every_process_and_resume_thaws_them(rt):
    bundle = rt.bundle(["sh", "-c", "while :; do :; done"])
    assert rt("run", "--detach", "--bundle", bundle, "busy").returncode == 0
    try:
        pid = rt.state("busy")["pid"]
        assert rt("pause", "busy").returncode == 0
        assert rt.state("busy")["status"] == "paused"
        assert [row["status"] for row in rt.list() if row["id"] == "busy"] == ["paused"]
        frozen = _cpu_ticks(pid)
        time.sleep(0.5)
        assert _cpu_ticks(pid) == frozen, "a paused container's loop kept running"
        again = rt("pause", "busy")
        assert again.returncode == 1 and "cannot pause a paused container" in again.stderr
        assert rt("resume", "busy").returncode == 0
        assert rt.state("busy")["status"] == "running"
        deadline = time.monotonic() + 5
        while _cpu_ticks(pid) == frozen:
            assert time.monotonic() < deadline, "resume did not thaw the loop"
            time.sleep(0.05)
        not_paused = rt("resume", "busy")
        assert not_paused.returncode == 1 and "container not paused" in not_paused.stderr
    finally:
        assert rt("delete", "--force", "busy").returncode == 0


def _cgroup_value(rt, name: str, v1: str, v2: str) -> str:
    ran = rt("exec", name, "sh", "-c", f"cat /sys/fs/cgroup/{v1} 2>/dev/null || cat /sys/fs/cgroup/{v2}")
    assert ran.returncode == 0, ran.stderr
    return ran.stdout.strip()


def test_update_changes_limits_of_a_running_container(rt, running, tmp_path):
    assert rt("update", "--memory", "48M", running).returncode == 0
    assert _cgroup_value(rt, running, "memory/memory.limit_in_bytes", "memory.max") == str(48 << 20)
    resources = tmp_path / "resources.json"
    resources.write_text(json.dumps({"pids": {"limit": 7}, "memory": {"limit": 40 << 20}}))
    assert rt("update", "-r", str(resources), running).returncode == 0
    assert _cgroup_value(rt, running, "pids/pids.max", "pids.max") == "7"
    assert _cgroup_value(rt, running, "memory/memory.limit_in_bytes", "memory.max") == str(40 << 20)
    resources.write_text(json.dumps({"blockIO": {"weight": 100}}))
    for bad, says in ((["-r", str(resources)], f"{resources}: resources.blockIO: not supported"),
                      ([], "nothing to change"), (["--memory", "lots"], "lots")):
        ran = rt("update", *bad, running)
        assert ran.returncode == 1 and says in ran.stderr and len(ran.stderr.strip().splitlines()) == 1, ran.stderr
    assert _cgroup_value(rt, running, "pids/pids.max", "pids.max") == "7", "a refused update changed a limit"


def test_rlimits_and_additional_gids_come_from_config(rt):
    def edit(config):
        config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 256, "hard": 512},
                                        {"type": "RLIMIT_CORE", "soft": 18446744073709551615,
                                         "hard": 18446744073709551615}]
        config["process"]["user"] = {"uid": 65534, "gid": 65534, "additionalGids": [5, 1234]}
    bundle = rt.bundle(["sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c; id -G"], edit)
    ran = rt("run", "--bundle", bundle, "rl")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["256", "512", "unlimited", "65534", "5", "1234"]


# ---- hooks ---------------------------------------------------------------------------------------


def _hook(tmp_path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_runtime_side_hooks_run_in_order_with_the_state_on_stdin(rt, tmp_path):
    record = tmp_path / "record"
    script = _hook(tmp_path, "hook.sh", f"read state; echo \"$1 $HOOKVAR $state\" >> {record}\n")

    def edit(config):
        config["hooks"] = {kind: [{"path": script, "args": ["record", kind], "env": [f"HOOKVAR=v-{kind}"],
                                   "timeout": 10}] for kind in ("prestart", "createRuntime", "poststart", "poststop")}
    bundle = rt.bundle(["sh", "-c", "exit 4"], edit)
    ran = rt("run", "--bundle", bundle, "hooked")
    assert ran.returncode == 4, ran.stderr
    lines = record.read_text().splitlines()
    assert [line.split(" ", 2)[:2] for line in lines] == [
        ["prestart", "v-prestart"], ["createRuntime", "v-createRuntime"], ["poststart", "v-poststart"],
        ["poststop", "v-poststop"]]
    states = [json.loads(line.split(" ", 2)[2]) for line in lines]
    assert [s["status"] for s in states] == ["creating", "creating", "running", "stopped"]
    assert states[0]["pid"] > 0 and states[0]["pid"] == states[2]["pid"] and states[3]["pid"] == 0
    assert all(s["id"] == "hooked" and s["bundle"] == bundle for s in states)


def test_a_failing_create_hook_fails_create_and_leaves_nothing(rt, tmp_path):
    failing = _hook(tmp_path, "failing", "echo 'no network for you' >&2; exit 3\n")
    slow = _hook(tmp_path, "slow", "exec /bin/sleep 30\n")
    for hook, says in (({"path": failing}, "hooks.createRuntime[0] (" + failing + ") failed: exit status 3: "
                        "no network for you"), ({"path": slow, "timeout": 1}, "timed out after 1 s"),
                       ({"path": "/nonexistent/hook"}, "No such file")):
        bundle = rt.bundle(["true"], _set("hooks", {"createRuntime": [hook]}))
        ran = rt("create", "--bundle", bundle, "hookfail")
        assert ran.returncode == 1 and says in ran.stderr, ran.stderr
        assert len(ran.stderr.strip().splitlines()) == 1 and "Traceback" not in ran.stderr
        assert rt.list() == [] and rt("state", "hookfail").returncode == 1


def test_a_failing_poststart_hook_is_a_warning(rt, tmp_path):
    failing = _hook(tmp_path, "failing", "exit 1\n")
    log = tmp_path / "runtime.log"
    bundle = rt.bundle(["sh", "-c", "echo ran"], _set("hooks", {"poststart": [{"path": failing}]}))
    ran = rt("--log", str(log), "--log-format", "json", "run", "--bundle", bundle, "warned")
    assert ran.returncode == 0 and ran.stdout == "ran\n", ran
    assert "warning: hooks.poststart[0]" in ran.stderr
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "warning" and "hooks.poststart[0]" in entry["msg"]


# ---- terminals: the console socket -----------------------------------------------------------------


def _console_listener(tmp_path):
    import socket

    path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    return server, path


def _receive_master(server) -> int:
    import socket

    server.settimeout(10)
    conn, _ = server.accept()
    with conn:
        name, fds, _, _ = socket.recv_fds(conn, 64, 1)
    assert name == b"/dev/ptmx" and len(fds) == 1
    return fds[0]


def _read_all(master: int, timeout: float = 10) -> bytes:
    import select

    data, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the last process of the terminal has gone
                break
            if not chunk:
                break
            data += chunk
    return data


def test_a_terminal_goes_to_the_console_socket_with_its_size(rt, tmp_path):
    server, path = _console_listener(tmp_path)
    with server:
        bundle = rt.bundle(["sh", "-c", "tty; stty size; echo done"], lambda c: c["process"].update(
            terminal=True, consoleSize={"height": 30, "width": 100}))
        ran = rt("create", "--console-socket", path, "--bundle", bundle, "term")
        assert ran.returncode == 0, ran.stderr
        master = _receive_master(server)
    try:
        assert rt("start", "term").returncode == 0
        out = _read_all(master).decode()
        assert out.split() == ["/dev/pts/0", "30", "100", "done"], out
    finally:
        os.close(master)
        assert rt("delete", "--force", "term").returncode == 0


def test_exec_with_a_terminal_and_the_terminal_flags_checked(rt, running, tmp_path):
    server, path = _console_listener(tmp_path)
    with server:
        ran = rt("exec", "--tty", "--console-socket", path, running, "sh", "-c", "tty; exit 6")
        assert ran.returncode == 6, ran.stderr
        master = _receive_master(server)
    try:
        assert _read_all(master).decode().split() == ["/dev/pts/0"]
    finally:
        os.close(master)
    bundle = rt.bundle(["true"], lambda c: c["process"].update(terminal=True))
    for args, says in ((["create", "--bundle", bundle, "t1"], "without setting console socket"),
                       (["create", "--bundle", rt.bundle(["true"]), "--console-socket", path, "t2"],
                        "cannot use console socket"),
                       (["create", "--bundle", bundle, "--console-socket", str(tmp_path / "none.sock"), "t3"],
                        "cannot connect"),
                       (["exec", "--tty", running, "true"], "needs --console-socket")):
        ran = rt(*args)
        assert ran.returncode == 1 and says in ran.stderr and len(ran.stderr.strip().splitlines()) == 1, ran.stderr
    assert [row["id"] for row in rt.list()] == [running]
