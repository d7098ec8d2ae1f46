"""The rootless single-id rung, as a real unprivileged user of this host would use it.

Every command runs the lab's CLI as the test user `clabtest` (setpriv(1): its own
uid and gid, no supplementary groups, a clean environment, Debian's python3),
with state and images in a home directory of its own.  The containers are real:
a user namespace mapping the user's uid to 0, mount/IPC/UTS/PID/network
namespaces it owns, an overlay mounted with userxattr over layers the user
unpacked.  The module checks that nothing is left: no process of the user, no
container state, no process in a foreign PID namespace, no mount (conftest).
"""

from __future__ import annotations

import glob
import json
import os
import pathlib
import pwd
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.request

import pytest

from images import build
from images.tarballs import entry, tar_bytes
from pod import bundle, users
from pod import run as pod_run

pytestmark = pytest.mark.skipif(users.why_not() is not None, reason=str(users.why_not()))


class User:
    """The lab's CLI as the test user, with a home (state, images) of its own."""

    def __init__(self, pw, source: str, home: pathlib.Path):
        self.pw, self.source, self.home = pw, source, home
        self.state, self.data = home / "state", home / "data"
        self.subuid = users.sub_range(pw.pw_name)  # (start, count), or None: single-id

    def uid_map(self) -> list[list[str]]:
        """The uid_map a container of this user has (one line single-id, two multi-id)."""
        rows = [["0", str(self.pw.pw_uid), "1"]]
        if self.subuid:
            rows.append(["1", str(self.subuid[0]), str(self.subuid[1])])
        return rows

    def cli(self, *args: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
        code = ("import sys, runpy; sys.argv = ['containerlab-magic', *sys.argv[1:]]; "
                "runpy.run_module('containerlab_magic', run_name='__main__')")
        extra = {"CONTAINERLAB_STATE": str(self.state), "CONTAINERLAB_DATA": str(self.data),
                 "CONTAINERLAB_DAEMON_LINGER": "1", **(env or {})}
        base = {"PATH": "/usr/bin:/bin", "HOME": str(self.home), "PYTHONPATH": self.source,
                "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8", **extra}
        argv = ["setpriv", f"--reuid={self.pw.pw_uid}", f"--regid={self.pw.pw_gid}", "--clear-groups", "env", "-i",
                *(f"{k}={v}" for k, v in base.items()), users.SYSTEM_PYTHON, "-c", code, *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd="/")

    def ok(self, *args: str, **kw) -> str:
        ran = self.cli(*args, **kw)
        assert ran.returncode == 0, f"{args}: exit {ran.returncode}: {ran.stderr}"
        return ran.stdout

    def processes(self) -> list[int]:
        found = subprocess.run(["pgrep", "-u", str(self.pw.pw_uid)], capture_output=True, text=True).stdout
        return [int(p) for p in found.split()]

    def wait_for_no_processes(self, timeout: float = 10) -> list[int]:
        deadline = time.monotonic() + timeout
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.1)  # (its daemon shim lingers 1 s after the last command)
        return self.processes()


@pytest.fixture(scope="module", params=["multi-id", "single-id"])
def user(request, module_no_leaks):
    """A user with /etc/subuid ranges (rootless-multi-id), and one without (single-id)."""
    pw = users.ensure_user(users.TEST_USER if request.param == "multi-id" else users.SINGLE_ID_USER)
    if request.param == "single-id" and users.sub_range(pw.pw_name) is not None:
        pytest.skip(f"{pw.pw_name} has /etc/subuid ranges here (made before this session)")
    source = users.package_copy()
    home = pathlib.Path(tempfile.mkdtemp(prefix="clab-rootless-home-"))  # in /tmp: the user can reach it
    os.chmod(home, 0o700)
    os.chown(home, pw.pw_uid, pw.pw_gid)
    u = User(pw, source, home)
    try:
        yield u
        assert u.wait_for_no_processes() == [], "the user's processes outlived the tests"
        left = os.listdir(u.state / "containers") if (u.state / "containers").is_dir() else []
        assert left == [], f"container state left: {left}"
    finally:
        for pid in u.processes():  # (only after a failure: our own test user's processes)
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(source)


# ---- a container, as the user -------------------------------------------------------------------


def test_a_user_runs_a_container_that_is_root_inside_a_user_namespace(user):
    out = user.ok("run", "busybox", "sh", "-c", "id -u; echo $$; hostname; ps -o pid,comm; cat /proc/self/uid_map")
    uid, pid, hostname, *rest = out.splitlines()
    ps, uid_map = rest[:-len(user.uid_map())], rest[-len(user.uid_map()):]
    assert uid == "0"
    assert [line.split() for line in uid_map] == user.uid_map()  # its own id; the /etc/subuid range if any
    assert pid == "1"  # its own PID namespace
    assert hostname and hostname != os.uname().nodename  # its own UTS namespace
    rows = [line.split() for line in ps[1:]]
    assert rows[0] == ["1", "sh"] and [r[1] for r in rows] == ["sh", "ps"]  # nothing of the host's


def test_the_exit_code_and_output_come_back(user):
    ran = user.cli("run", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (ran.returncode, ran.stdout, ran.stderr) == (3, "out\n", "err\n")


def test_the_writable_layer_takes_writes_and_deletions(user):
    """The layers belong to the user (root inside): without that, every write into the
    overlay fails with EACCES (the notes' gotcha 1)."""
    out = user.ok("run", "busybox", "sh", "-c",
                  "echo new > /etc/motd && cat /etc/motd && echo more >> /etc/passwd && rm /bin/vi && "
                  "test ! -e /bin/vi && mkdir -p /root/x && echo done")
    assert out.splitlines() == ["new", "done"]
    assert user.ok("run", "busybox", "sh", "-c", "test -e /bin/vi && ! test -e /etc/motd && echo fresh") == "fresh\n"


def test_devices_are_usable_and_no_new_ones_can_be_made(user):
    out = user.ok("run", "busybox", "sh", "-c",
                  "echo x > /dev/null && head -c 4 /dev/zero | wc -c && mknod /tmp/mem c 1 1 2>&1; echo $?")
    lines = out.splitlines()
    assert lines[0].strip() == "4"
    assert lines[-1] != "0", "mknod of a real device worked in a rootless container"


def test_network_none_is_a_loopback_of_its_own(user):
    out = user.ok("run", "busybox", "sh", "-c", "ip -o link | cut -d: -f2; nc -l -p 7000 -e echo hi & "
                  "sleep 0.2; nc 127.0.0.1 7000")
    names = [line.strip() for line in out.splitlines()[:-1]]
    assert names == ["lo"] and out.splitlines()[-1] == "hi"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_published_ports_go_through_pasta_on_loopback(user):
    """-p without root: pasta, run as the user, splices 127.0.0.1:PORT into the container's
    own network namespace; the container still has no route out; pasta ends with it;
    a port already taken is one line."""
    port = _free_port()
    name = "rl-srv"
    user.ok("run", "-d", "--name", name, "-p", f"{port}:8080", "busybox", "sh", "-c",
            "echo hello > /tmp/index.html; exec httpd -f -p 8080 -h /tmp")
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2) as reply:
                    assert reply.read() == b"hello\n"
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert f"127.0.0.1:{port}->8080/tcp" in user.ok("ps")
        routes = user.ok("exec", name, "sh", "-c", "ip route; ip -o -4 addr show | grep -v ' lo ' | wc -l")
        assert routes.split() == ["0"], routes  # no default route, no address but loopback's
        taken = user.cli("run", "-p", f"{port}:80", "busybox", "true")
        assert taken.returncode == 125 and f"cannot publish 127.0.0.1:{port}" in taken.stderr
        assert len(taken.stderr.strip().splitlines()) == 1, taken.stderr
    finally:
        user.cli("rm", "-f", name)
    helpers = subprocess.run(["ps", "-u", str(user.pw.pw_uid), "-o", "args="], capture_output=True, text=True).stdout
    assert "pasta" not in helpers, helpers


def test_a_detached_container_has_ps_exec_logs_stop_and_rm(user):
    name = "rl-web"
    user.ok("run", "-d", "--name", name, "busybox", "sh", "-c", "echo started; exec sleep 60")
    try:
        assert name in user.ok("ps")
        out = user.ok("exec", name, "sh", "-c", "id -u; ps -o comm; cat /proc/self/uid_map")
        uid, *ps = out.splitlines()
        assert uid == "0" and [line.split() for line in ps[-len(user.uid_map()):]] == user.uid_map()
        assert "sleep" in ps  # the exec joined the container's PID namespace
        deadline = time.monotonic() + 5
        while "started" not in user.ok("logs", name) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert user.ok("logs", name) == "started\n"
        user.ok("stop", "-t", "1", name)
        assert "exited" in user.ok("ps", "-a")
    finally:
        user.cli("rm", "-f", name)
    assert name not in user.ok("ps", "-a")


@pytest.mark.parametrize("how", [["--read-only"], ["--dry-run"], []], ids=["cold", "dry-run", "warm-or-cold"])
def test_explain_names_the_user_namespace_and_the_bound_devices(user, how):
    """Cold (--read-only: no spare serves it), planned (--dry-run) or claimed warm: the same facts."""
    ran = user.cli("run", "--explain", *how, "busybox", "true")
    assert ran.returncode == 0, ran.stderr
    out = ran.stderr + ran.stdout  # (the timeline goes to stderr, a dry run's plan to stdout)
    assert "CLONE_NEWUSER" in out
    assert f"uid {user.pw.pw_uid} and gid {user.pw.pw_gid} are 0 inside" in out
    if how:  # (a warm PID 1 mounted its rootfs before the claim: its timeline starts at the go)
        assert "bind the host's /dev/null" in out and "userxattr" in out


def test_an_image_with_whiteouts_and_an_opaque_directory_loads_and_runs(user):
    """Unpacked by the user: whiteouts as 0/0 devices (allowed without privilege), opaque
    directories as user.overlay.opaque, the overlay mounted with userxattr.  Without
    userxattr the opaque directory's lower files would come back (the notes' gotcha 2)."""
    work = pathlib.Path(tempfile.mkdtemp(prefix="clab-rootless-img-"))
    try:
        layout = build.Layout(str(work / "layout"))
        lower = tar_bytes([entry("data/", "dir"), entry("data/old.txt", data=b"old"), entry("data/dir/", "dir"),
                           entry("data/dir/a", data=b"a"), entry("data/keep", data=b"k")])
        upper = tar_bytes([entry("data/", "dir"), entry("data/.wh.old.txt"), entry("data/dir/", "dir"),
                           entry("data/dir/.wh..wh..opq"), entry("data/dir/z", data=b"z")])
        layers = [(build.busybox_tar(), build.OCI_LAYER_GZIP), (lower, build.OCI_LAYER_GZIP),
                  (upper, build.OCI_LAYER_GZIP)]
        layout.tag("rootless:wh", layout.image(layers))
        archive = work / "image.tar"
        with tarfile.open(archive, "w") as tar:
            for name in sorted(os.listdir(layout.path)):
                tar.add(os.path.join(layout.path, name), arcname=name)
        os.chmod(work, 0o755)
        os.chmod(archive, 0o644)
        loaded = user.ok("load", "-i", str(archive))
        name = loaded.split("Loaded image: ", 1)[1].split()[0]
        out = user.ok("run", name, "sh", "-c", "ls /data | sort; echo --; ls /data/dir")
        assert out.split("--\n") == ["dir\nkeep\n", "z\n"], out
        user.ok("rmi", name)
    finally:
        shutil.rmtree(work)


def _load(user, work: pathlib.Path, tag: str, layers) -> str:
    layout = build.Layout(str(work / "layout"))
    layout.tag(tag, layout.image([(build.busybox_tar(), build.OCI_LAYER_GZIP)] +
                                 [(layer, build.OCI_LAYER_GZIP) for layer in layers]))
    archive = work / "image.tar"
    with tarfile.open(archive, "w") as tar:
        for name in sorted(os.listdir(layout.path)):
            tar.add(os.path.join(layout.path, name), arcname=name)
    os.chmod(work, 0o755)
    os.chmod(archive, 0o644)
    return user.ok("load", "-i", str(archive)).split("Loaded image: ", 1)[1].split()[0]


def test_image_files_keep_their_owners_where_ids_are_mapped(user):
    """Multi-id: the layer's owners (a `node` user's home, a setuid-root program) are set in
    the lab's own user namespace, so they are theirs inside, and `rmi` can remove them.
    Single-id: every file is the user's (root inside), and setuid bits are dropped."""
    work = pathlib.Path(tempfile.mkdtemp(prefix="clab-rootless-own-"))
    try:
        layer = tar_bytes([entry("home/", "dir"), entry("home/node/", "dir", uid=1000, gid=1000, mode=0o750),
                           entry("home/node/.profile", data=b"x", uid=1000, gid=1000),
                           entry("home/node/link", "symlink", link=".profile", uid=1000, gid=1000),
                           entry("usr/", "dir"), entry("usr/bin/", "dir"),
                           entry("usr/bin/setid", data=b"#!/bin/sh\n", mode=0o4755)])
        name = _load(user, work, "rootless:own", [layer])
        out = user.ok("run", name, "sh", "-c", "stat -c '%u:%g %a' /home/node /home/node/.profile /usr/bin/setid; "
                                               "stat -c %u /home/node/link")
        if user.subuid:
            assert out.split("\n")[:4] == ["1000:1000 750", "1000:1000 644", "0:0 4755", "1000"], out
            out = user.ok("run", "--user", "1000:1000", name, "sh", "-c", "echo hi > /home/node/new && cat /home/node/new")
            assert out == "hi\n"
        else:
            assert out.split("\n")[:4] == ["0:0 750", "0:0 644", "0:0 755", "0"], out
        data_layers = user.data / "images" / "oci" / "layers"
        before = set(os.listdir(data_layers)) if data_layers.is_dir() else set()
        user.ok("rmi", name)
        user.wait_for_no_processes()  # (a warm spare of the image keeps its layers mounted till its shim ends)
        user.ok("image", "prune")
        after = set(os.listdir(data_layers)) if data_layers.is_dir() else set()
        assert len(after) < len(before), (before, after)  # the layer with the others' files went too
        owned = subprocess.run(["find", str(user.data), "-not", "-uid", str(user.pw.pw_uid)],
                               capture_output=True, text=True).stdout.split()
        assert owned == [], f"files of mapped ids left in the store: {owned[:5]}"
    finally:
        shutil.rmtree(work)


# ---- what the rung cannot do: one line each, nothing left --------------------------------------


def test_without_a_cgroup_memory_and_pids_limits_are_rlimits(user):
    """No cgroup is delegated to the user on this host: --memory is RLIMIT_AS and
    --pids-limit RLIMIT_NPROC (counted in the container's own user namespace), labelled
    as approximations in explain; an allocation past it fails, a fork past it fails."""
    out = user.ok("run", "--memory", "64M", "--pids-limit", "6", "busybox", "sh", "-c", "ulimit -v; ulimit -u")
    assert out.split() == [str(64 << 10), "6"]
    ran = user.cli("run", "--memory", "48M", "host", "python3", "-c", "bytearray(96 << 20)")
    assert ran.returncode == 1 and "MemoryError" in ran.stderr, ran.stderr
    ran = user.cli("run", "--pids-limit", "4", "busybox", "sh", "-c",
                   "for i in 1 2 3 4 5 6; do sleep 1 & done 2>&1; wait")
    assert "can't fork" in ran.stdout + ran.stderr, ran
    explained = user.cli("run", "--explain", "--memory", "64M", "busybox", "true").stderr
    assert "setrlimit RLIMIT_AS=67108864 (no cgroup: approximations)" in explained, explained


def test_other_users_inside_exist_only_in_a_multi_id_namespace(user):
    """Multi-id: --user 1000 is uid 100000+999 on the host, with its groups; an id past the
    range is refused in one line.  Single-id: only root exists, and that is one line."""
    if user.subuid is None:
        ran = user.cli("run", "--user", "1000", "busybox", "true")
        assert ran.returncode == 125 and "only root (your own uid" in ran.stderr
        return
    out = user.ok("run", "--user", "1000:1000", "busybox", "sh", "-c",
                  "id -u; id -g; touch /tmp/f; stat -c %u /tmp/f")
    assert out.split()[:3] == ["1000", "1000", "1000"], out
    ran = user.cli("run", "--user", str(user.subuid[1] + 5), "busybox", "true")
    assert ran.returncode == 125 and "is not mapped in this rootless container" in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1, ran.stderr


V1_DELEGATED = ("memory", "pids", "cpu")


@pytest.fixture
def v1_groups(user):
    """What rung_fixes tells root to do on a cgroup v1 host: a group per controller under
    the lab's own subtree, given to the user; removed after (with the lab's parent when
    this made it and nothing else uses it)."""
    if not all(os.path.isdir(f"/sys/fs/cgroup/{c}/cgroup.procs") or os.path.isfile(f"/sys/fs/cgroup/{c}/cgroup.procs")
               for c in V1_DELEGATED):
        pytest.skip("not a cgroup v1 host with memory, pids and cpu hierarchies (the v2 VM has its own test)")
    made = []
    for c in V1_DELEGATED:
        lab = f"/sys/fs/cgroup/{c}/containerlab"
        if not os.path.isdir(lab):
            os.mkdir(lab)
            made.append(lab)
        group = f"{lab}/user-{user.pw.pw_uid}"
        os.mkdir(group)
        made.append(group)
        for path in (group, f"{group}/cgroup.procs", f"{group}/tasks"):
            os.chown(path, user.pw.pw_uid, user.pw.pw_gid)
    user.cli("ps")  # (a shim that started before the groups existed has no manager: let it end)
    user.wait_for_no_processes()
    try:
        yield [g for g in made if "user-" in g]
    finally:
        user.wait_for_no_processes()
        for path in reversed(made):
            for _ in range(50):
                try:
                    if os.path.isdir(os.path.join(path, "containerlab")):
                        os.rmdir(os.path.join(path, "containerlab"))
                    os.rmdir(path)
                    break
                except OSError:
                    time.sleep(0.1)  # (the kernel frees a group a moment after its last process)


def test_groups_root_delegated_on_v1_give_real_limits(user, v1_groups):
    """With groups of its own (cgroup v1, made by root as doctor says), the user's containers
    get real cgroups: the limit is the kernel's, an allocation past it is an OOM kill,
    forks past pids.max fail, --cpus is accepted; the groups are removed after."""
    assert "limits   cgroup v1 (cpu memory pids)" in user.ok("doctor")
    out = user.ok("run", "--memory", "32M", "--pids-limit", "12", "--cpus", "0.5", "busybox", "sh", "-c",
                  "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max")
    assert out.split() == [str(32 << 20), "12"], out
    ran = user.cli("run", "--memory", "32M", "host", "python3", "-c", "bytearray(96 << 20)")
    assert ran.returncode == 137, ran
    ran = user.cli("run", "--pids-limit", "4", "busybox", "sh", "-c", "for i in 1 2 3 4 5 6; do sleep 1 & done 2>&1; wait")
    assert "can't fork" in ran.stdout + ran.stderr, ran
    user.wait_for_no_processes()
    for group in v1_groups:
        lab = os.path.join(group, "containerlab")
        left = [d for d in os.listdir(lab) if os.path.isdir(os.path.join(lab, d))] if os.path.isdir(lab) else []
        assert left == [], f"container groups left in {lab}: {left}"


@pytest.mark.parametrize("args, says", [
    (["--cpus", "0.5"], "--cpus needs a cgroup, and this host delegates none"),
    (["--net", "bridge", "--net-rate", "1mbit"], "--net-rate, --net-delay and --net-loss (tc on both ends"),
    (["--net", "container:other"], "joining another container's network needs root"),
], ids=["cpus", "shaping", "container-net"])
def test_what_the_rung_lacks_is_refused_in_one_line(user, args, says):
    ran = user.cli("run", *args, "busybox", "true")
    assert ran.returncode == 125
    assert says in ran.stderr and len(ran.stderr.strip().splitlines()) == 1, ran.stderr
    assert "Traceback" not in ran.stderr and "internal error" not in ran.stderr
    assert "rl-" not in user.ok("ps", "-a")


def _holders(user) -> list[int]:
    """The user's network namespace holders (network/userland.py), by their process name."""
    found = []
    for pid in user.processes():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().startswith(b"containerlab-magic-network\0"):
                    found.append(pid)
        except OSError:
            pass
    return found


def _host_address() -> str | None:
    """This machine's own first global IPv4 address (traffic to it stays on the machine)."""
    found = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True,
                           text=True).stdout.split()
    return found[3].split("/")[0] if len(found) > 3 else None


def test_a_users_bridge_network_connects_its_containers_by_name(user):
    """A rootless bridge lives in the user's own user + network namespace: containers on it
    reach each other by name, -p goes through pasta on loopback, nothing routes out of it,
    and removing the last network ends its holder."""
    port = _free_port()
    user.ok("network", "create", "rlnet")
    try:
        holders = _holders(user)
        assert len(holders) == 1, holders
        holder = holders[0]
        assert os.readlink(f"/proc/{holder}/ns/net") != os.readlink("/proc/self/ns/net")
        assert os.readlink(f"/proc/{holder}/ns/user") != os.readlink("/proc/self/ns/user")
        with open(f"/proc/{holder}/net/route") as f:  # its routes: the bridge's subnet, no default
            routes = [line.split() for line in f.read().splitlines()[1:]]
        assert routes and all(r[1] != "00000000" for r in routes), routes
        user.ok("run", "-d", "--net", "rlnet", "--name", "rl-web", "-p", f"127.0.0.1:{port}:80", "busybox",
                "httpd", "-f", "-p", "80", "-h", "/etc")
        out = user.ok("run", "--net", "rlnet", "busybox", "sh", "-c",
                      "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://rl-web/hostname && exit; sleep 0.2; done")
        assert out.strip() == "rl-web", out
        body = b""
        for _ in range(50):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=2) as answer:
                    body = answer.read()
                break
            except OSError:
                time.sleep(0.1)
        assert body.strip() == b"rl-web"
        host_ip = _host_address()
        if host_ip:  # a server of the host's on its own address: the network has no way there
            import http.server
            import threading

            server = http.server.HTTPServer((host_ip, 0), http.server.SimpleHTTPRequestHandler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            try:
                ran = user.cli("run", "--net", "rlnet", "busybox", "wget", "-T", "2", "-qO-",
                               f"http://{host_ip}:{server.server_address[1]}/")
                assert ran.returncode != 0, "a container on a rootless bridge reached the host"
            finally:
                server.shutdown()
                server.server_close()
        members = json.loads(user.ok("network", "inspect", "rlnet"))
        members = members[0] if isinstance(members, list) else members
        assert [c["name"] for c in members["containers"].values()] == ["rl-web"]
        busy = user.cli("network", "rm", "rlnet")
        assert busy.returncode != 0 and "in use by rl-web" in busy.stderr
    finally:
        user.cli("rm", "-f", "rl-web")
        user.cli("network", "rm", "rlnet")
    deadline = time.monotonic() + 5
    while _holders(user) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _holders(user) == [], "the network namespace holder outlived the last network"


# ---- isolation from the host and from other users ------------------------------------------------


def test_the_container_cannot_read_the_users_home_or_signal_its_processes(user):
    secret = user.home / "secret.txt"
    secret.write_text("private\n")
    os.chown(secret, user.pw.pw_uid, user.pw.pw_gid)
    caller = subprocess.Popen(["setpriv", f"--reuid={user.pw.pw_uid}", f"--regid={user.pw.pw_gid}",
                               "--clear-groups", "sleep", "30"])
    try:
        out = user.ok("run", "busybox", "sh", "-c",
                      f"cat {secret} 2>&1; echo; kill -0 {caller.pid} 2>&1; echo $?")
        assert "private" not in out
        assert out.strip().splitlines()[-1] != "0", "the container could signal one of the user's host processes"
        assert caller.poll() is None
    finally:
        caller.kill()
        caller.wait()
        secret.unlink()


def test_another_user_can_neither_see_nor_touch_the_containers(user):
    """nobody runs the same CLI with its own (default) directories: it sees none of
    clabtest's containers, and cannot reach clabtest's shim socket."""
    name = "rl-private"
    user.ok("run", "-d", "--name", name, "busybox", "sleep", "60")
    other_home = pathlib.Path(tempfile.mkdtemp(prefix="clab-rootless-other-"))
    nobody = pwd.getpwnam("nobody")
    os.chown(other_home, nobody.pw_uid, nobody.pw_gid)
    try:
        other = User(nobody, user.source, other_home)
        assert name not in other.ok("ps", "-a")
        assert other.cli("stop", name).returncode != 0
        socket_path = next(user.state.rglob("*.sock"))
        probe = ("import socket, sys\ns = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
                 "try:\n    s.connect(sys.argv[1])\n    print('connected')\nexcept OSError as e:\n    print(e.errno)\n")
        ran = subprocess.run(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
                              users.SYSTEM_PYTHON, "-I", "-c", probe, str(socket_path)],
                             capture_output=True, text=True, cwd="/")
        assert ran.stdout.strip() == "13", ran  # EACCES: the state directory is 0700
        assert name in user.ok("ps")  # still running
        assert other.wait_for_no_processes() == []
    finally:
        user.cli("rm", "-f", name)
        shutil.rmtree(other_home, ignore_errors=True)


def test_loading_the_extension_names_the_rung_in_one_line(user):
    """What `%load_ext containerlab_magic` prints for this user (IPython is not in the
    system Python the user runs, so the function it prints is called directly)."""
    ran = users.run_as(user.pw.pw_uid, user.pw.pw_gid, user.source,
                       "from containerlab_magic.runtime import rungs; print(rungs.notice())", home=str(user.home))
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("isolation rung: rootless-") and len(ran.stdout.splitlines()) == 1, ran.stdout
    assert rungs_notice_as_root() is None


def rungs_notice_as_root():
    from containerlab_magic.runtime import rungs

    return rungs.notice()


# ---- in an emulated locked-down pod (runc: uid 1000, no capabilities, no_new_privs) ------------

POD_RUN = ("import subprocess, sys; "
           "r = subprocess.run([sys.executable, '-m', 'containerlab_magic', 'run', 'busybox', 'sh', '-c', "
           "'id -u; echo $$; cat /proc/self/uid_map; echo x > /etc/y && cat /etc/y; hostname'], "
           "capture_output=True, text=True); "
           "print(r.returncode); print(r.stdout, end=''); print(r.stderr, end='', file=sys.stderr)")


@pytest.mark.skipif(pod_run.why_not() is not None, reason=str(pod_run.why_not()))
@pytest.mark.parametrize("seccomp, unmasked, own_pid", [
    ("crio", False, False), ("unconfined", False, False), ("unconfined", True, True)],
    ids=["crio-masked", "unconfined-masked", "unconfined-unmasked"])
def test_a_container_starts_in_a_locked_down_pod(seccomp, unmasked, own_pid):
    """The pod's bounding set is empty, its /proc and /sys partly masked: the container's
    user namespace starts with every capability of its own; under a masked /proc it has
    no PID namespace (the pod's /proc, bound) and the host's /sys, bound read-only."""
    pod = bundle.Pod(seccomp=seccomp, unmasked_proc=unmasked)
    ran = pod_run.run(pod, pod_run.python_argv("-c", POD_RUN))
    assert ran.returncode == 0, ran.stderr
    code, uid, pid, uid_map, written, hostname = ran.stdout.splitlines()
    assert (code, uid, written) == ("0", "0", "x"), ran.stderr
    assert uid_map.split() == ["0", str(pod.uid), "1"]
    assert (pid == "1") == own_pid
    if seccomp == "crio":  # its profile refuses sethostname without CAP_SYS_ADMIN of the host
        assert hostname == "jupyter-student"


SANDBOX_DRIVER = r"""
import json, os, subprocess, sys, time
def cli(*args):
    r = subprocess.run([sys.executable, '-m', 'containerlab_magic', *args], capture_output=True, text=True)
    return [r.returncode, r.stdout, r.stderr]
def ours():
    mine = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                if f.read().startswith(b'sleep\0'):
                    mine.append(int(pid))
        except OSError:
            pass
    return mine
out = {}
out['run'] = cli('run', 'busybox', 'sh', '-c', 'id -u; echo $TMPDIR; pwd; stat -c %a $TMPDIR; sleep 50 & echo bg')
time.sleep(0.5)
out['after_run'] = ours()
out['detach'] = cli('run', '-d', '--name', 'bg', 'busybox', 'sh', '-c', 'sleep 60 & sleep 61')
out['exec'] = cli('exec', 'bg', 'sh', '-c', 'sleep 62 & echo execd')
out['ps'] = cli('ps')
out['rm'] = cli('rm', '-f', 'bg')
time.sleep(0.5)
out['after_rm'] = ours()
out['memory'] = cli('run', '--memory', '48M', 'host', 'python3', '-c', 'bytearray(96 << 20)')
for name, args in (('volume', ['-v', '/tmp:/x']), ('cpus', ['--cpus', '1']), ('user', ['--user', '1000'])):
    out[name] = cli('run', *args, 'busybox', 'true')
print(json.dumps(out))
"""


@pytest.mark.skipif(pod_run.why_not() is not None, reason=str(pod_run.why_not()))
def test_a_pod_that_allows_no_namespace_gets_a_process_sandbox():
    """The containerd-like pod: no namespace of any kind.  A run is a plain process of the
    user's, with a private TMPDIR, rlimits and seccomp, and says so; what it starts ends
    with it (its session), also for a detached one and its execs; what it cannot do is
    refused in one line."""
    import json

    ran = pod_run.run(bundle.Pod(seccomp="containerd"), pod_run.python_argv("-c", SANDBOX_DRIVER))
    assert ran.returncode == 0, ran.stderr
    out = json.loads(ran.stdout)
    code, stdout, stderr = out["run"]
    assert code == 0 and "process-sandbox: this host allows no namespaces" in stderr, out["run"]
    uid, tmpdir, cwd, mode, bg = stdout.split()
    assert (uid, mode, bg) == ("1000", "700", "bg") and tmpdir == cwd and tmpdir.endswith("/tmp")
    assert out["after_run"] == [], "a background process outlived its sandboxed container"
    assert out["detach"][0] == 0 and out["exec"][:2] == [0, "execd\n"] and "bg" in out["ps"][1]
    assert out["rm"][0] == 0 and out["after_rm"] == [], "rm -f left processes of the container or its exec"
    assert out["memory"][0] == 1 and "MemoryError" in out["memory"][2]
    for name, says in (("volume", "-v/--volume needs a namespace"), ("cpus", "--cpus needs a cgroup"),
                       ("user", "--user needs a namespace")):
        code, _, stderr = out[name]
        assert code == 125 and says in stderr and len(stderr.strip().splitlines()) == 1, (name, stderr)


# ---- the tour, under nbval, as a student in a pod --------------------------------------------------

TOUR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks", "tour.ipynb")


ROOTLESS_SKIPS = ("needs-root", "needs-host-kernel")


def for_rootless(notebook: str, dest: pathlib.Path, must_skip: bool = True, own_pid: bool = True) -> pathlib.Path:
    """The notebook with the cells the rootless rungs cannot run skipped (nbval-skip):
    those tagged needs-root (link shaping, cgroups) or needs-host-kernel (a VM from
    /boot), and without a PID namespace of the container's own (a masked /proc), those
    tagged needs-pid-namespace."""
    import json

    with open(notebook) as f:
        nb = json.load(f)
    skipped = 0
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if any(tag in tags for tag in ROOTLESS_SKIPS) or (not own_pid and "needs-pid-namespace" in tags):
            tags.append("nbval-skip")
            skipped += 1
    assert skipped or not must_skip, f"{notebook} marks no cell needs-root"
    dest.mkdir(mode=0o755, exist_ok=True)
    path = dest / os.path.basename(notebook)
    path.write_text(json.dumps(nb))
    path.chmod(0o644)
    return path


def nbval_in_pod(seccomp: str, unmasked: bool, folder: pathlib.Path, notebook: str) -> subprocess.CompletedProcess:
    pod = bundle.Pod(seccomp=seccomp, unmasked_proc=unmasked, binds=((str(folder), "/notebook"),),
                     env=("CONTAINERLAB_DAEMON_LINGER=1",))
    return pod_run.run(pod, pod_run.python_argv(
        "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
        "--nbval-cell-timeout", "120", f"/notebook/{notebook}"), timeout=900)


@pytest.mark.slow
@pytest.mark.skipif(pod_run.why_not() is not None, reason=str(pod_run.why_not()))
@pytest.mark.parametrize("seccomp, unmasked", [("crio", False), ("unconfined", False), ("unconfined", True)],
                         ids=["crio-masked", "unconfined-masked", "unconfined-unmasked"])
def test_the_tour_runs_under_nbval_in_a_locked_down_pod(seccomp, unmasked):
    """notebooks/tour.ipynb, top to bottom under nbval, as uid 1000 with no capabilities and
    no_new_privs, in each pod that allows namespaces: every cell but those marked needs-root
    (link shaping) runs without an error, on the rung the pod gives, the bridge network
    section included (in the user's own network namespace)."""
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="clab-rootless-nb-"))
    os.chmod(scratch, 0o755)
    try:
        for_rootless(TOUR, scratch / "nb", own_pid=unmasked)
        ran = nbval_in_pod(seccomp, unmasked, scratch / "nb", "tour.ipynb")
        assert ran.returncode == 0, ran.stdout[-6000:] + ran.stderr[-2000:]
        assert " passed" in ran.stdout and "skipped" in ran.stdout, ran.stdout[-2000:]
    finally:
        shutil.rmtree(scratch)


COURSE = sorted(glob.glob(os.path.join(os.path.dirname(TOUR), "en", "*.ipynb"))
                + glob.glob(os.path.join(os.path.dirname(TOUR), "ko", "*.ipynb")))


@pytest.mark.slow
@pytest.mark.skipif(pod_run.why_not() is not None, reason=str(pod_run.why_not()))
@pytest.mark.parametrize("notebook", COURSE, ids=lambda p: os.path.relpath(p, os.path.dirname(TOUR)))
def test_the_course_runs_under_nbval_as_a_student_in_a_pod(notebook):
    """Each course notebook, both languages, under nbval as uid 1000 in the pod with its own
    PID namespace (procMount: Unmasked): every cell but those tagged needs-root or
    needs-host-kernel runs without an error (course_lessons.ROOT_ONLY says which, and why)."""
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="clab-rootless-course-"))
    os.chmod(scratch, 0o755)
    try:
        for_rootless(notebook, scratch / "nb", must_skip=False)
        ran = nbval_in_pod("unconfined", True, scratch / "nb", os.path.basename(notebook))
        assert ran.returncode == 0, ran.stdout[-6000:] + ran.stderr[-2000:]
        assert " passed" in ran.stdout, ran.stdout[-2000:]
    finally:
        shutil.rmtree(scratch)


def test_ulimit_lowers_and_group_add_needs_a_multi_id_namespace(user):
    """--ulimit is set before the container drops its capabilities; a user cannot raise a
    hard limit past its own, and says so in one line.  --group-add needs setgroups(2):
    a multi-id namespace has it, a single-id one refuses in one line."""
    out = user.ok("run", "--ulimit", "nofile=64:128", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn")
    assert out.split() == ["64", "128"]
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY:
        ran = user.cli("run", "--ulimit", f"nofile={hard + 1}", "busybox", "true")
        assert ran.returncode == 125 and f"the hard limit here is {hard}" in ran.stderr, ran.stderr
        assert len(ran.stderr.strip().splitlines()) == 1, ran.stderr
    ran = user.cli("run", "--group-add", "tty", "--user", "0:0", "busybox", "id", "-G")
    if user.subuid is None:
        assert ran.returncode == 125 and "--group-add needs setgroups(2)" in ran.stderr, ran.stderr
        assert len(ran.stderr.strip().splitlines()) == 1, ran.stderr
    else:
        assert ran.returncode == 0 and ran.stdout.split() == ["0", "5"], ran
