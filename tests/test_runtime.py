"""The runtime core through the Engine, on the real kernel.

Isolation, streaming, exit codes, timeouts, exec, detached logs, ownership
and gc after crashes, bad input; each test checks nothing leaked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import STATE, needs_root
from containerlab_magic.runtime import ContainerSpec, Limits, Mount
from containerlab_magic.runtime.errors import Conflict, ContainerError, NotFound, SpecError
from containerlab_magic.runtime.security import DEFAULT_MASK
from containerlab_magic.runtime.state import alive, proc_start_time, wait_for

pytestmark = needs_root


def run(engine, *command, image="busybox", **kw):
    result = engine.run(ContainerSpec(list(command), image=image, **kw)).wait(timeout=60)
    return result


def sh(engine, script, image="busybox", **kw):
    return run(engine, "sh", "-c", script, image=image, **kw)


# ---------------------------------------------------------------- isolation

def test_command_is_pid_1_and_host_pids_are_invisible(engine, no_leaks):
    r = sh(engine, "echo $$; ls /proc | grep -E '^[0-9]+$'")
    lines = r.stdout.decode().split()
    assert lines[0] == "1"
    pids = {int(p) for p in lines[1:]}
    assert 1 in pids
    assert os.getpid() not in pids or os.getpid() < 10
    assert max(pids) < 10, f"host processes visible: {sorted(pids)}"


def test_own_hostname_defaults_to_the_name(engine, no_leaks):
    assert sh(engine, "hostname", hostname="lab").stdout == b"lab\n"
    assert sh(engine, "hostname; cat /etc/hostname", name="named-box").stdout == b"named-box\nnamed-box\n"
    assert os.uname().nodename not in ("lab", "named-box")


def test_only_loopback_and_it_is_up(engine, no_leaks):
    r = sh(engine, "ls /sys/class/net; cat /sys/class/net/lo/operstate; ping -c1 -W1 127.0.0.1 >/dev/null && echo pong")
    assert r.stdout.decode().split() == ["lo", "unknown", "pong"]


def test_writes_inside_never_reach_the_host(engine, no_leaks, tmp_path):
    marker = f"clab-marker-{os.getpid()}"
    r = sh(engine, f"echo x > /etc/{marker} && echo x > /root/{marker} && echo x > /tmp/{marker} && cat /etc/{marker}",
           image="host")
    assert r.exit_code == 0, r
    assert r.stdout == b"x\n"
    for where in ("/etc", "/root", "/tmp"):
        assert not os.path.exists(f"{where}/{marker}")
    # and the next container starts from a clean image
    assert sh(engine, f"test -e /etc/{marker} && echo leaked || echo clean", image="host").stdout == b"clean\n"


READ_ONLY_PROBE = textwrap.dedent("""
    import errno, os, sys
    for path in sys.argv[1:]:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)   # open only, never write
        except OSError as e:
            print(path, errno.errorcode[e.errno])
        else:
            os.close(fd)
            print(path, "WRITABLE")
""")


def test_host_files_and_proc_sys_are_read_only(engine, no_leaks):
    paths = ["/usr/bin/env", "/usr/lib/os-release", "/proc/sys/kernel/hostname", "/proc/sys/net/ipv4/ip_forward",
             "/proc/sysrq-trigger", "/sys/kernel/mm/transparent_hugepage/enabled"]
    paths = [p for p in paths if os.path.exists(p)]  # this kernel may lack some
    r = run(engine, "python3", "-c", READ_ONLY_PROBE, *paths, image="host")
    assert r.exit_code == 0, r
    for line in r.stdout.decode().splitlines():
        path, verdict = line.split()
        assert verdict in ("EROFS", "EACCES", "EPERM"), line


def test_masked_paths_read_empty(engine, no_leaks):
    r = sh(engine, "for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do "
                   "[ -e $f ] && echo $f $(cat $f | wc -c); done; echo firmware $(ls /sys/firmware | wc -l)")
    assert r.exit_code == 0, r
    for line in r.stdout.decode().splitlines():
        assert line.split()[1] == "0", line
    assert "firmware 0" in r.stdout.decode()


def test_capabilities_and_no_new_privs(engine, no_leaks):
    r = sh(engine, "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status")
    status = dict(line.split(":\t") for line in r.stdout.decode().splitlines())
    assert int(status["CapEff"], 16) == DEFAULT_MASK
    assert int(status["CapBnd"], 16) == DEFAULT_MASK
    assert status["NoNewPrivs"] == "1"
    r = sh(engine, "id -u; grep CapEff /proc/self/status", user="1000:1000")
    lines = r.stdout.decode().split()
    assert lines[0] == "1000" and int(lines[2], 16) == 0


def test_only_stdio_is_open(engine, no_leaks):
    box = engine.run(ContainerSpec(["sleep", "30"], image="busybox"))
    try:
        time.sleep(0.2)
        assert sorted(os.listdir(f"/proc/{box.pid}/fd")) == ["0", "1", "2"]
        assert os.readlink(f"/proc/{box.pid}/cwd") == "/"  # relative to its own root
    finally:
        box.kill()
        box.wait(timeout=10)


def test_workdir_env_user_name_and_binds(engine, no_leaks, tmp_path):
    (tmp_path / "in.txt").write_text("from host\n")
    out = tmp_path / "out"
    out.mkdir()
    r = sh(engine, "pwd; echo $GREETING; cat /data/in.txt; echo made > /out/f; (echo no >> /data/in.txt) 2>/dev/null || echo ro",
           workdir="/work/dir", env={"GREETING": "hello"},
           mounts=(Mount(str(tmp_path / "in.txt"), "/data/in.txt", True), Mount(str(out), "/out")))
    assert r.stdout.decode().splitlines() == ["/work/dir", "hello", "from host", "ro"]
    assert (out / "f").read_text() == "made\n"


def test_read_only_rootfs_keeps_tmp_writable(engine, no_leaks):
    r = sh(engine, "touch /newfile 2>/dev/null && echo root-writable; touch /tmp/ok && echo tmp-ok", read_only=True)
    assert r.stdout == b"tmp-ok\n"


def test_busybox_and_host_images_differ(engine, no_leaks):
    assert b"BusyBox" in sh(engine, "ls --help 2>&1 | head -1").stdout + sh(engine, "busybox | head -1").stdout
    r = run(engine, "python3", "-c", "import sys; print(sys.version_info[0])", image="host")
    assert r.stdout == b"3\n", r


# ---------------------------------------------------------------- streaming, exit codes, timeouts

def test_output_streams_before_the_command_ends(engine, no_leaks):
    box = engine.run(ContainerSpec(["sh", "-c", "echo first; echo oops >&2; sleep 3; echo second"], image="busybox"))
    started = time.monotonic()
    seen = []
    for stream, data in box.output():
        seen.append((stream, data, box.done, time.monotonic() - started))
    result = box.wait()
    assert result.exit_code == 0
    first = next(s for s in seen if b"first" in s[1])
    assert first[0] == "stdout" and not first[2], "the first line arrived only after the container ended"
    assert first[3] < 2.5
    assert any(s[0] == "stderr" and b"oops" in s[1] for s in seen)


def test_callback_receives_output(engine, no_leaks):
    got = []
    box = engine.run(ContainerSpec(["sh", "-c", "echo a; echo b >&2"], image="busybox"),
                     on_output=lambda stream, data: got.append((stream, data)))
    assert box.wait().exit_code == 0
    assert ("stdout", b"a\n") in got and ("stderr", b"b\n") in got


@pytest.mark.parametrize("command,code", [
    (["sh", "-c", "exit 3"], 3),
    (["true"], 0),
    (["nosuchcommand"], 127),
    (["/etc/passwd"], 126),
])
def test_exit_codes(engine, no_leaks, command, code):
    r = run(engine, *command)
    assert r.exit_code == code
    if code in (126, 127):
        assert r.error and "\n" not in r.error


def test_killed_by_signal_is_128_plus_n(engine, no_leaks):
    box = engine.run(ContainerSpec(["sleep", "30"], image="busybox"))
    box.kill(signal.SIGKILL)
    r = box.wait(timeout=10)
    assert r.exit_code == 137 and r.signal == signal.SIGKILL


def test_stop_sends_term_then_kill(engine, no_leaks):
    box = engine.run(ContainerSpec(["sh", "-c", "trap 'echo got-term; exit 7' TERM; echo ready; "
                                    "while :; do sleep 0.05; done"], image="busybox"))
    out = box.output(timeout=10)
    assert next(out) == ("stdout", b"ready\n")  # the trap is set
    box.stop(grace=5)
    rest = b"".join(data for stream, data in out if stream == "stdout")
    r = box.wait(timeout=10)
    assert r.exit_code == 7 and b"got-term" in rest
    # PID 1 of a PID namespace gets only the signals it handles (pid_namespaces(7)): sleep has none
    stubborn = engine.run(ContainerSpec(["sleep", "30"], image="busybox"))
    t = time.monotonic()
    stubborn.stop(grace=0.5)
    r = stubborn.wait(timeout=10)
    assert r.exit_code == 137 and time.monotonic() - t < 5


def test_timeout_kills_and_says_so(engine, no_leaks):
    r = run(engine, "sleep", "30", timeout=0.5)
    assert r.timed_out and r.exit_code == 137
    assert "timeout" in r.describe()
    assert r.duration < 10


# ---------------------------------------------------------------- exec, detach, logs

def test_exec_joins_the_container(engine, no_leaks):
    engine.run(ContainerSpec(["sh", "-c", "echo hi > /tmp/mark; sleep 30"], image="busybox", name="exec-target",
                             hostname="target", detach=True))
    try:
        assert wait_for(lambda: engine.exec("exec-target", ["cat", "/tmp/mark"]).wait(10).stdout == b"hi\n", 10)
        r = engine.exec("exec-target", ["sh", "-c", "hostname; cat /tmp/mark; cat /proc/1/cmdline | tr '\\0' ' '; echo; "
                                                    "ls /sys/class/net"]).wait(10)
        lines = r.stdout.decode().splitlines()
        assert lines == ["target", "hi", "sleep 30 ", "lo"], lines  # busybox sh execs its last command
        assert engine.exec("exec-target", ["sh", "-c", "exit 5"]).wait(10).exit_code == 5
        assert engine.exec("exec-target", ["nosuch"]).wait(10).exit_code == 127
    finally:
        engine.rm("exec-target", force=True)
    with pytest.raises(NotFound):
        engine.exec("exec-target", ["true"])


def test_exec_into_a_stopped_container_is_one_clear_line(engine, no_leaks):
    engine.run(ContainerSpec(["true"], image="busybox", name="finished", detach=True))
    assert engine.wait("finished", timeout=10) == 0
    with pytest.raises(ContainerError) as err:
        engine.exec("finished", ["true"])
    assert "not running" in str(err.value) and "\n" not in str(err.value)
    engine.rm("finished")


def test_detached_output_goes_to_the_log_in_order(engine, no_leaks):
    # stdout and stderr are two pipes: order between them holds at human time scales, as with docker
    engine.run(ContainerSpec(["sh", "-c", "echo one; sleep 0.1; echo two >&2; sleep 0.1; echo three"],
                             image="busybox", name="logger",
                             detach=True))
    assert engine.wait("logger", timeout=10) == 0
    assert list(engine.logs("logger")) == [("stdout", b"one\n"), ("stderr", b"two\n"), ("stdout", b"three\n")]
    rows = {r["name"]: r for r in engine.ps(all=True)}
    assert rows["logger"]["status"] == "exited" and rows["logger"]["exit_code"] == 0
    assert "logger" not in {r["name"] for r in engine.ps()}
    engine.rm("logger")
    with pytest.raises(NotFound):
        engine.inspect("logger")


def test_logs_follow_until_the_end(engine, no_leaks):
    engine.run(ContainerSpec(["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.2; done"], image="busybox",
                             name="follower", detach=True))
    chunks = b"".join(data for _, data in engine.logs("follower", follow=True))
    assert chunks == b"1\n2\n3\n"
    engine.rm("follower")


def test_rm_running_needs_force(engine, no_leaks):
    box = engine.run(ContainerSpec(["sleep", "30"], image="busybox", name="busy", detach=True))
    start = proc_start_time(box.pid)
    with pytest.raises(Conflict):
        engine.rm("busy")
    assert proc_start_time(box.pid) == start, "a refused rm touched the running container"
    engine.rm("busy", force=True)
    assert wait_for(lambda: not alive(box.pid, start), 10), "the container's process outlived rm -f"
    with pytest.raises(NotFound):
        engine.inspect("busy")


def test_foreground_containers_are_removed_when_they_exit(engine, no_leaks):
    box = engine.run(ContainerSpec(["sleep", "0.3"], image="busybox", name="fg"))
    assert engine.inspect("fg")["status"] == "running"
    box.wait(10)
    # the name is free at once (the shim removes the rest when idle, within moments)
    engine.run(ContainerSpec(["true"], image="busybox", name="fg")).wait(10)

    def gone() -> bool:
        try:
            engine.inspect("fg")
        except NotFound:
            return True
        return False

    assert wait_for(gone, 5)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("make,kind,words", [
    (lambda: ContainerSpec(["true"], image="nosuchimage"), NotFound, "unknown image"),
    (lambda: ContainerSpec([]), SpecError, "no command"),
    (lambda: ContainerSpec(["true"], limits=Limits.parse(memory="12x")), SpecError, "invalid --memory"),
    (lambda: ContainerSpec(["true"], mounts=(Mount.parse("/nonexistent/src:/x"),)), SpecError, "does not exist"),
    (lambda: ContainerSpec(["true"], name="bad name!"), SpecError, "invalid container name"),
    (lambda: ContainerSpec(["true"], hostname="-x"), SpecError, "invalid hostname"),
    (lambda: ContainerSpec(["true"], workdir="relative"), SpecError, "absolute"),
])
def test_bad_input_is_one_line_and_leaves_nothing(engine, no_leaks, make, kind, words):
    with pytest.raises(kind) as err:
        engine.run(make())
    message = str(err.value)
    assert words in message and "\n" not in message


def test_bind_source_gone_at_mount_time_fails_in_pid1_and_leaves_nothing(engine, no_leaks, tmp_path):
    source = tmp_path / "vanishing"
    source.mkdir()
    mount = Mount.parse(f"{source}:/data")
    source.rmdir()  # valid when the spec was made, gone when PID 1 mounts it
    r = engine.run(ContainerSpec(["true"], image="busybox", mounts=(mount,))).wait(30)
    assert r.exit_code == 125 and "rootfs" in r.error and "\n" not in r.describe(), r


def test_a_cgroup_write_the_kernel_refuses_is_one_line_and_undone(engine, no_leaks):
    cpus = os.cpu_count() or 1
    with pytest.raises(ContainerError) as err:
        engine.run(ContainerSpec(["true"], image="busybox", limits=Limits(cpuset_cpus=str(cpus + 63))))
    assert "\n" not in str(err.value)
    assert engine.run(ContainerSpec(["true"], image="busybox")).wait(30).exit_code == 0  # the shim serves on


def test_name_in_use(engine, no_leaks):
    engine.run(ContainerSpec(["sleep", "30"], image="busybox", name="taken", detach=True))
    try:
        with pytest.raises(Conflict) as err:
            engine.run(ContainerSpec(["true"], image="busybox", name="taken"))
        assert "already in use" in str(err.value)
    finally:
        engine.rm("taken", force=True)


# ---------------------------------------------------------------- ownership and gc

OWNER = textwrap.dedent("""
    import sys, time
    from containerlab_magic.runtime import Engine, ContainerSpec
    e = Engine()
    box = e.run(ContainerSpec(["sleep", "300"], image="busybox", name=sys.argv[1], detach=True))
    print(box.pid, e.shim_pid, flush=True)
    time.sleep(300)
""")


def _owner(name: str):
    proc = subprocess.Popen([sys.executable, "-c", OWNER, name], stdout=subprocess.PIPE, text=True)
    pid, shim = map(int, proc.stdout.readline().split())
    return proc, pid, shim


def test_containers_end_with_their_engine_process(engine, no_leaks):
    proc, pid, shim = _owner("orphan-a")
    assert engine.inspect("orphan-a")["status"] == "running"
    proc.kill()  # kill -9 of the kernel-like owner: its shim sees EOF and cleans up
    proc.wait()
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}")

    def gone() -> bool:
        try:
            engine.inspect("orphan-a")
        except NotFound:
            return True
        return False

    assert wait_for(gone, 10), "the dying shim did not remove the container's state"


def _cgroup_dirs(pid: int, cid: str) -> list[str]:
    """The container's own cgroup directories, from /proc/PID/cgroup (v1: one per hierarchy)."""
    dirs = []
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if cid in path:
                hierarchy = controllers.replace("name=", "") or "unified"
                base = "/sys/fs/cgroup" if os.path.isfile("/sys/fs/cgroup/cgroup.controllers") else \
                    f"/sys/fs/cgroup/{hierarchy}"
                dirs.append(base + path)
    return dirs


def test_gc_after_kill_9_of_owner_and_shim(engine, no_leaks):
    proc, pid, shim = _owner("orphan-b")
    cid, start = engine.inspect("orphan-b")["id"], proc_start_time(pid)
    groups, state_dir = _cgroup_dirs(pid, cid), os.path.join(engine.state_root, "containers", cid)
    assert groups and all(os.path.isdir(g) for g in groups) and os.path.isdir(state_dir)
    os.kill(shim, signal.SIGKILL)  # the shim first, so nobody is left to clean up
    proc.kill()
    proc.wait()
    assert wait_for(lambda: proc_start_time(shim) is None, 10), "the shim did not die"
    assert alive(pid, start), "the container should outlive its dead shim until gc"
    assert engine.inspect("orphan-b")["status"] == "running"
    assert os.path.exists(os.path.join(STATE, "cgroups", cid))  # the ledger names its cgroup
    removed = engine.gc()
    # the container, and nothing else but the dead shim's spare slots
    assert any("orphan-b" in item and cid[:12] in item for item in removed), removed
    assert all(item.startswith("spare") for item in removed if "orphan-b" not in item), removed
    # what gc removed is gone from the host: the process, every cgroup, the state, the ledger entry
    assert wait_for(lambda: not alive(pid, start), 10), "gc left the container's process running"
    assert not [g for g in groups if os.path.exists(g)], "gc left the container's cgroups"
    assert not os.path.exists(state_dir), "gc left the container's state directory"
    assert not os.path.exists(os.path.join(STATE, "cgroups", cid))
    with pytest.raises(NotFound):
        engine.inspect("orphan-b")
    assert engine.gc() == []


def test_start_from_another_thread(engine, no_leaks):
    import threading

    results = []

    def worker():
        results.append(sh(engine, "echo from-thread").stdout)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [b"from-thread\n"] * 4


def test_tty_comes_from_the_containers_own_devpts(engine, no_leaks):
    box = engine.run(ContainerSpec(["sh", "-c", "tty; read line; stty size; echo got $line"], image="busybox",
                                   tty=True))
    box.resize(30, 100)  # before the line it waits for, so stty sees the new size
    box.write(b"typed\n")
    out = box.wait(10).stdout.replace(b"\r", b"")
    assert b"/dev/pts/0\n" in out and b"got typed\n" in out
    assert b"30 100\n" in out, out


def test_tty_has_the_callers_size_before_its_command_runs(engine, no_leaks):
    # no resize after the start: the size comes with the request, set on the pty before go
    box = engine.run(ContainerSpec(["stty", "size"], image="busybox", tty=True), tty_size=(33, 111))
    assert box.wait(10).stdout.replace(b"\r", b"") == b"33 111\n"


def test_interactive_stdin(engine, no_leaks):
    box = engine.run(ContainerSpec(["sh", "-c", "cat; echo end"], image="busybox", interactive=True))
    box.write(b"line one\n")
    box.close_stdin()
    assert box.wait(10).stdout == b"line one\nend\n"


def test_sys_fs_cgroup_shows_the_containers_own_limits_read_only(engine, no_leaks):
    v2 = engine.cgroups.version == 2
    memory = "/sys/fs/cgroup/memory.max" if v2 else "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    pids = "/sys/fs/cgroup/pids.max" if v2 else "/sys/fs/cgroup/pids/pids.max"
    r = sh(engine, f"cat /proc/self/cgroup; cat {memory} {pids}; (echo 1 > {pids}) 2>/dev/null || echo read-only",
           limits=Limits.parse(memory="96M", pids_limit="33"))
    lines = r.stdout.decode().split()
    assert str(96 << 20) in lines and "33" in lines and "read-only" in lines, lines
    # the cgroup namespace: the container's group is its root
    assert all(line.endswith(":/") for line in r.stdout.decode().splitlines() if ":" in line and "memory" in line)


def test_storage_size_caps_the_writable_layer_and_tmp(engine, no_leaks):
    r = sh(engine, "dd if=/dev/zero of=/big bs=1M count=8 2>/dev/null && echo root-fit || echo root-full; rm -f /big; "
                   "dd if=/dev/zero of=/tmp/big bs=1M count=8 2>/dev/null && echo tmp-fit || echo tmp-full; "
                   "rm -f /tmp/big; dd if=/dev/zero of=/small bs=1M count=1 2>/dev/null && echo small-fit",
           limits=Limits.parse(storage_size="4M"))
    assert r.stdout.decode().split() == ["root-full", "tmp-full", "small-fit"], r


def test_without_cgroups_plain_containers_run_and_limits_are_refused(no_leaks, monkeypatch):
    """The named degraded mode: what a host without writable cgroups gets."""
    from containerlab_magic.runtime import Engine
    from containerlab_magic.runtime.errors import HostUnsupported

    monkeypatch.setenv("CONTAINERLAB_CGROUPS", "off")
    with Engine() as bare:
        r = bare.run(ContainerSpec(["sh", "-c", "echo namespaces only; echo $$"], image="busybox")).wait(30)
        assert r.stdout == b"namespaces only\n1\n" and r.usage is None
        with pytest.raises(HostUnsupported) as err:
            bare.run(ContainerSpec(["true"], image="busybox", limits=Limits.parse(memory="64M")))
        assert "CONTAINERLAB_CGROUPS=off" in str(err.value) and "\n" not in str(err.value)
