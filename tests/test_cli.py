"""`containerlab-magic` from a shell: exit codes, one-line errors, the daemon and its verbs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import STATE, needs_root, shims

pytestmark = needs_root


def cli(*args, timeout=60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "containerlab_magic", *args], capture_output=True,
                          text=True, timeout=timeout, **kw)


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {text!r}"
    return lines[0]


def until(predicate, timeout: float = 10.0) -> bool:
    """Poll predicate until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def shim_of(pid: int) -> int:
    """The parent of a container's PID 1: the shim that forked it."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_run_streams_stdout_and_stderr_separately(no_leaks):
    r = cli("run", "busybox", "sh", "-c", "echo out; echo err >&2; exit 4")
    assert (r.returncode, r.stdout, r.stderr) == (4, "out\n", "err\n")


def test_the_first_word_is_always_the_image(no_leaks):
    r = cli("run", "host", "python3", "-c", "print('from host image')")
    assert (r.returncode, r.stdout) == (0, "from host image\n")
    # after IMAGE every word is the command's, even one that looks like an option of run
    r = cli("run", "busybox", "echo", "--name", "literal", "-d")
    assert (r.returncode, r.stdout) == (0, "--name literal -d\n")
    r = cli("run", "--name", "dd", "busybox", "--", "echo", "--name")
    assert r.stdout == "--name\n"
    # a command where the image belongs is an unknown image, not a command to guess at
    r = cli("run", "echo", "hi")
    assert r.returncode == 125
    assert one_line(r.stderr).startswith("containerlab-magic: unknown image 'echo'; local images: host, ")


# (images that other test modules pulled into the shared data root may follow)
UNKNOWN_IMAGE = "containerlab-magic: unknown image 'no-such-image'; local images: host, "


@pytest.mark.parametrize("args,code,words", [
    (["run", "no-such-image", "true"], 125, UNKNOWN_IMAGE),
    (["run", "busybox", "nosuch-command"], 127, "command not found"),
    (["run", "host", "/etc/passwd"], 126, "cannot run"),
    (["run", "--memory", "12x", "busybox", "true"], 125, "invalid --memory"),
    (["run"], 125, "no image given"),
    (["run", "busybox"], 125, "no command"),
    (["run", "-v", "/nonexistent/path:/x", "busybox", "true"], 125, "does not exist"),
    (["run", "--cpus", "lots", "busybox", "true"], 125, "invalid --cpus"),
    (["run", "--bogus-flag", "busybox", "true"], 125, "unrecognized arguments"),
    # ranges, checked before anything is made
    (["run", "--pids-limit", "4194305", "busybox", "true"], 125, "give from 1 to 4194304"),
    (["run", "--memory", "99999999T", "busybox", "true"], 125, "at most 1024T"),
    (["run", "--timeout", "1e10", "busybox", "true"], 125, "30 days"),
    (["run", "--timeout", "1e308", "busybox", "true"], 125, "30 days"),
    (["run", "--timeout", "inf", "busybox", "true"], 125, "30 days"),
    (["run", "--cpus", "4096", "busybox", "true"], 125, "this host has"),
    # the new flags' bad input
    (["run", "--label", "=v", "busybox", "true"], 125, "invalid label"),
    (["run", "--env-file", "/nonexistent/env", "busybox", "true"], 125, "--env-file /nonexistent/env"),
    (["run", "--security-opt", "apparmor=x", "busybox", "true"], 125, "unsupported --security-opt"),
    (["run", "--security-opt", "seccomp=/nonexistent.json", "busybox", "true"], 125, "seccomp=/nonexistent.json"),
    (["run", "--dry-run", "busybox", "true"], 125, "--dry-run goes with --explain"),
    (["ps", "--filter", "colour=red"], 125, "invalid filter"),
    (["ps", "--filter", "status=sleeping"], 125, "status is one of"),
    (["cp", "no-such-container:/etc/hosts", "/tmp/x"], 125, "no such container"),
    (["cp", "/etc/hostname", "no-such-container:/tmp/"], 125, "no such container"),
    (["cp", "/etc/hostname", "/tmp/x"], 125, "between the host and a container"),
    (["kill", "-s", "999", "no-such-container"], 125, "unknown signal 999"),
    (["stop", "-t", "inf", "no-such-container"], 125, "invalid stop time inf"),
    (["stop", "-t", "-1", "no-such-container"], 125, "invalid stop time -1"),
    (["top", "no-such-container"], 125, "no such container"),
    (["port", "no-such-container"], 125, "no such container"),
    (["inspect", "no-such-container"], 125, "no such container"),
    (["exec", "no-such-container", "true"], 125, "no such container"),
    (["logs", "no-such-container"], 125, "no such container"),
    (["frobnicate"], 125, "invalid choice"),
])
def test_errors_are_one_line_with_docker_exit_codes(no_leaks, args, code, words):
    r = cli(*args)
    assert r.returncode == code, r
    assert words in one_line(r.stderr)
    assert "Traceback" not in r.stderr


def test_timeout_is_reported(no_leaks):
    r = cli("run", "--timeout", "0.5", "busybox", "sleep", "30")
    assert r.returncode == 137
    assert "timeout" in one_line(r.stderr)


def test_oom_kill_is_reported_as_such(no_leaks):
    r = cli("run", "--memory", "32M", "host", "python3", "-c", "b = bytearray(256 << 20)")
    assert r.returncode == 137
    assert "out of memory (limit 32 MiB)" in one_line(r.stderr)


def test_detached_lifecycle_through_the_daemon(no_leaks):
    r = cli("run", "-d", "--name", "cli-web", "busybox", "sh", "-c", "echo started; sleep 60")
    assert r.returncode == 0 and len(r.stdout.strip()) == 64
    cli("run", "-d", "--name", "cli-other", "busybox", "sleep", "60")
    try:
        # the CLI has exited; the containers live on in one daemon shim
        r = cli("inspect", "cli-web", "no-such-container", "cli-other")
        assert r.returncode == 125 and "no such container: no-such-container" in one_line(r.stderr)
        docs = {doc["Name"]: doc for doc in json.loads(r.stdout)}
        assert docs["cli-web"]["State"]["Running"] and docs["cli-other"]["State"]["Running"]
        assert shim_of(docs["cli-web"]["State"]["Pid"]) == shim_of(docs["cli-other"]["State"]["Pid"])
        ps = cli("ps").stdout
        assert "cli-web" in ps and "running" in ps
        assert cli("run", "-d", "--name", "cli-web", "busybox", "true").returncode == 125
        r = cli("exec", "cli-web", "sh", "-c", "hostname; exit 3")
        assert (r.returncode, r.stdout) == (3, "cli-web\n")
        assert until(lambda: cli("logs", "cli-web").stdout == "started\n")
        assert cli("rm", "cli-web").returncode == 125  # running: needs -f
        t = time.monotonic()
        assert cli("stop", "-t", "1", "cli-web").returncode == 0
        assert time.monotonic() - t < 8
        assert cli("wait", "cli-web").stdout.strip() == "137"
        assert "exited (137)" in cli("ps", "-a").stdout
        r = cli("exec", "cli-web", "true")
        assert r.returncode == 125 and "not running" in one_line(r.stderr)
    finally:
        cli("rm", "-f", "cli-web", "cli-other")
    assert "cli-web" not in cli("ps", "-a").stdout


def _spares() -> dict[str, dict]:
    """The daemon's containers made ahead of need, by id (their state says `spare`)."""
    found = {}
    root = os.path.join(STATE, "containers")
    for cid in os.listdir(root) if os.path.isdir(root) else ():
        try:
            with open(os.path.join(root, cid, "state.json")) as f:
                state = json.load(f)
        except (OSError, ValueError):
            continue
        if state.get("status") == "spare" and state.get("pid"):
            found[cid] = state
    return found


def test_the_daemon_lingers_with_a_warm_spare_for_the_next_command(no_leaks):
    assert until(lambda: not shims()), "an earlier test's daemon is still serving"
    env = dict(os.environ, CONTAINERLAB_DAEMON_LINGER="4")
    assert cli("run", "busybox", "true", env=env).returncode == 0
    (daemon,) = shims()
    # idle, it makes the next busybox container ahead: PID 1 cloned, rootfs mounted
    assert until(lambda: any(s["shim_pid"] == daemon for s in _spares().values()))
    (cid, spare), = _spares().items()
    r = cli("run", "-d", "busybox", "sleep", "30", env=env)
    try:
        assert r.returncode == 0 and r.stdout.strip() == cid  # the next command claimed it
        state = json.loads(cli("inspect", cid, env=env).stdout)[0]["State"]
        assert state["Pid"] == spare["pid"] and shim_of(state["Pid"]) == daemon
        assert shims() == {daemon}  # no second shim for the foreground calls either
    finally:
        assert cli("rm", "-f", cid, env=env).returncode == 0
    assert until(lambda: any(s["shim_pid"] == daemon for s in _spares().values()))
    time.sleep(1.5)  # within its linger it stays, spare and all
    assert shims() == {daemon} and _spares()
    # then it leaves, and takes its spares with it (no_leaks checks the cgroups, mounts, PIDs)
    assert until(lambda: not shims(), timeout=15)
    assert not _spares()


def test_a_bad_daemon_linger_is_one_line(no_leaks):
    for value in ("soon", "-1", "nan", "1e9"):
        r = cli("run", "busybox", "true", env=dict(os.environ, CONTAINERLAB_DAEMON_LINGER=value))
        assert r.returncode == 125 and "CONTAINERLAB_DAEMON_LINGER" in one_line(r.stderr), r.stderr


def test_ctrl_c_stops_the_foreground_container(no_leaks):
    proc = subprocess.Popen([sys.executable, "-m", "containerlab_magic", "run", "--name", "interrupt-me",
                             "busybox", "sh", "-c", "echo ready; sleep 60"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        t = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=15)
        assert code == 130
        assert time.monotonic() - t < 6
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "interrupt-me" not in cli("ps", "-a").stdout


def test_stats_update_pause(no_leaks):
    assert cli("run", "-d", "--name", "limited", "--memory", "64M", "--pids-limit", "20", "busybox",
               "sleep", "60").returncode == 0
    try:
        r = cli("stats", "--no-stream", "limited")
        assert r.returncode == 0 and "64 MiB" in r.stdout and "/ 20" in r.stdout
        assert cli("update", "limited", "--memory", "128M", "--pids-limit", "30").returncode == 0
        r = cli("stats", "--no-stream", "limited")
        assert "128 MiB" in r.stdout and "/ 30" in r.stdout
        assert cli("pause", "limited").returncode == 0
        assert "paused" in cli("ps").stdout
        assert cli("unpause", "limited").returncode == 0
        assert "paused" not in cli("ps").stdout
        r = cli("update", "limited", "--memory", "1k")
        assert r.returncode == 125 and "too small" in one_line(r.stderr)
    finally:
        cli("rm", "-f", "limited")


def test_explain_prints_the_plan_without_running(no_leaks):
    r = cli("run", "--explain", "--dry-run", "--read-only", "busybox", "true")
    assert r.returncode == 0
    assert "pivot_root" in r.stdout and "mount proc on /proc" in r.stdout and "remount / read-only" in r.stdout


def test_doctor_and_images_and_gc(no_leaks):
    r = cli("doctor")
    assert r.returncode == 0 and "overlayfs" in r.stdout and "cgroups" in r.stdout
    r = cli("images")
    assert "busybox" in r.stdout and "host" in r.stdout
    assert cli("gc").stdout.strip() == "nothing to clean up"


@pytest.mark.parametrize("flags", [[], ["-s", "KILL"], ["-s", "SIGKILL"], ["-s", "9"], ["-s", "kill"]])
def test_kill_sends_sigkill_in_every_spelling(no_leaks, flags):
    assert cli("run", "-d", "--name", "cli-kill", "busybox", "sleep", "60").returncode == 0
    try:
        r = cli("kill", *flags, "cli-kill")
        assert (r.returncode, r.stdout) == (0, "cli-kill\n"), r
        assert cli("wait", "cli-kill").stdout.strip() == "137"
        assert "exited (137)" in cli("ps", "-a", "--filter", "name=cli-kill").stdout
    finally:
        cli("rm", "-f", "cli-kill")


def test_kill_with_a_bad_signal_is_one_line_and_touches_nothing(no_leaks):
    assert cli("run", "-d", "--name", "cli-stays", "busybox", "sleep", "60").returncode == 0
    try:
        for bad in ("999", "BOGUS", "0"):
            r = cli("kill", "-s", bad, "cli-stays")
            assert r.returncode == 125 and "unknown signal" in one_line(r.stderr), r
        assert "running" in cli("ps", "--filter", "name=cli-stays").stdout
    finally:
        cli("rm", "-f", "cli-stays")


def test_env_file_labels_filters_and_entrypoint(no_leaks, tmp_path):
    env = tmp_path / "lab.env"
    env.write_text("# course settings\nCOURSE=net101\n\nFROM_SHELL\nSPACED=a b\n")
    r = cli("run", "--env-file", str(env), "-e", "EXTRA=1", "--entrypoint", "sh", "busybox", "-c",
            "echo $COURSE/$FROM_SHELL/$SPACED/$EXTRA", env={**os.environ, "FROM_SHELL": "kept"})
    assert (r.returncode, r.stdout) == (0, "net101/kept/a b/1\n"), r
    cli("run", "-d", "--name", "cli-lab-a", "--label", "course=net101", "-l", "team=red", "busybox", "sleep", "60")
    cli("run", "-d", "--name", "cli-lab-b", "--label", "course=net102", "busybox", "sleep", "60")
    try:
        def names(*filters):
            r = cli("ps", "-q", *[x for f in filters for x in ("--filter", f)])
            assert r.returncode == 0, r
            ids = r.stdout.split()
            return sorted(doc["Name"] for doc in json.loads(cli("inspect", *ids).stdout)) if ids else []

        assert names("label=course=net101") == ["cli-lab-a"]
        assert names("label=course") == ["cli-lab-a", "cli-lab-b"]
        assert names("label=course", "name=lab-b") == ["cli-lab-b"]
        assert names("label=course", "label=team=red") == ["cli-lab-a"]
        assert names("label=nosuch") == []
    finally:
        cli("rm", "-f", "cli-lab-a", "cli-lab-b")


def test_new_run_flags_reach_the_spec(no_leaks, tmp_path):
    profile = tmp_path / "seccomp.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    r = cli("run", "-d", "--rm", "--init", "--name", "cli-flags", "--cap-add", "NET_ADMIN", "--cap-drop", "MKNOD",
            "--security-opt", "no-new-privileges=false", "--memory", "64M", "--cpus", "0.5", "--pids-limit", "30",
            "-l", "k=v", "busybox", "sleep", "60")
    assert r.returncode == 0, r
    try:
        doc = json.loads(cli("inspect", "cli-flags").stdout)[0]
        host = doc["HostConfig"]
        assert (host["AutoRemove"], host["Init"], host["CapAdd"], host["CapDrop"]) == \
            (True, True, ["NET_ADMIN"], ["MKNOD"])
        assert "no-new-privileges=false" in host["SecurityOpt"]
        assert (host["Memory"], host["NanoCpus"], host["PidsLimit"]) == (64 << 20, 500_000_000, 30)
        assert doc["Config"]["Labels"] == {"k": "v"} and doc["State"]["Status"] == "running"
    finally:
        cli("rm", "-f", "cli-flags")


def test_top_cp_and_port(no_leaks, tmp_path):
    r = cli("run", "-d", "--name", "cli-box", "--net", "bridge", "-p", "18789:80", "busybox", "sh", "-c",
            "echo inside > /tmp/file; ln -s ../../../.. /tmp/up; sleep 60")
    assert r.returncode == 0, r
    try:
        assert until(lambda: "sleep 60" in cli("top", "cli-box").stdout)
        lines = cli("top", "cli-box").stdout.splitlines()
        assert lines[0].split() == ["PID", "USER", "TIME", "CMD"] and lines[1].split()[1] == "root"
        assert until(lambda: cli("cp", "cli-box:/tmp/file", str(tmp_path / "out")).returncode == 0)
        assert (tmp_path / "out").read_text() == "inside\n"
        (tmp_path / "in").write_text("from the host\n")
        assert cli("cp", str(tmp_path / "in"), "cli-box:/tmp/").returncode == 0
        assert cli("exec", "cli-box", "cat", "/tmp/in").stdout == "from the host\n"
        r = cli("cp", "cli-box:/tmp/up/etc/shadow", str(tmp_path / "shadow"))
        assert r.returncode == 125 and "leads out of container cli-box's root" in one_line(r.stderr)
        assert not (tmp_path / "shadow").exists()
        assert cli("port", "cli-box").stdout == "80/tcp -> 127.0.0.1:18789\n"
    finally:
        cli("rm", "-f", "cli-box")


def test_module_and_console_script_names():
    r = cli("--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: containerlab-magic")
    with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "pyproject.toml")) as f:
        scripts = f.read().split("[project.scripts]")[1].split("[")[0]
    assert 'containerlab-magic = "containerlab_magic.quick_cli:main"' in scripts  # (which hands on to cli.py)
    assert "\ncontainerlab =" not in scripts  # that name belongs to another tool


# `python -m containerlab_magic ARGS` that writes the modules it imported to a file as it exits
WITH_MODULES = ("import atexit, json, runpy, sys\n"
                "out = sys.argv.pop(1)\n"
                "atexit.register(lambda: open(out, 'w').write(json.dumps(sorted(sys.modules))))\n"
                "runpy.run_module('containerlab_magic', run_name='__main__', alter_sys=True)\n")


def cli_modules(tmp_path, *args, **env) -> tuple[subprocess.CompletedProcess, list[str]]:
    """(run in tmp_path: a relative path in args is the caller's, as in a shell)"""
    out = tmp_path / "modules.json"
    path = os.pathsep.join(filter(None, [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                         os.environ.get("PYTHONPATH")]))
    r = subprocess.run([sys.executable, "-c", WITH_MODULES, str(out), *args], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, PYTHONPATH=path, **env), cwd=tmp_path)
    return r, json.loads(out.read_text())


def test_run_takes_the_daemons_quick_path_when_it_is_up(no_leaks, tmp_path):
    """With the daemon up, `run` is parsed and started by the daemon: the caller imports
    neither the CLI nor the Engine, and prints exactly what the full CLI prints."""
    held = cli("run", "-d", "--name", "quick-keeper", "busybox", "sleep", "60")  # the daemon stays up
    assert held.returncode == 0, held.stderr
    try:
        argv = ("run", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
        r, modules = cli_modules(tmp_path, *argv)
        assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
        assert "containerlab_magic.quick_cli" in modules
        assert "containerlab_magic.cli" not in modules and "containerlab_magic.runtime.engine" not in modules
        full, modules = cli_modules(tmp_path, *argv, CONTAINERLAB_QUICK="0")  # the same, the long way
        assert (full.returncode, full.stdout, full.stderr) == (3, "out\n", "err\n")
        assert "containerlab_magic.cli" in modules
        # the caller's directory and environment, as the full CLI reads them
        (tmp_path / "vars").write_text("A=from-file\n")
        r, modules = cli_modules(tmp_path, "run", "--env-file", "vars", "-e", "B", "busybox", "sh", "-c",
                                 "echo $A $B", B="from-shell")
        assert (r.returncode, r.stdout) == (0, "from-file from-shell\n") and "containerlab_magic.cli" not in modules
        # detached: the id; an error of the start: one line, 125, nothing left
        r, modules = cli_modules(tmp_path, "run", "-d", "--name", "quick-keeper", "busybox", "true")
        assert r.returncode == 125 and "quick-keeper" in one_line(r.stderr), r.stderr
        assert "containerlab_magic.cli" not in modules
        r, _ = cli_modules(tmp_path, "run", "-d", "--rm", "busybox", "true")
        assert r.returncode == 0 and len(r.stdout.strip()) == 64
        # the container's own end: the full CLI's last line
        r, modules = cli_modules(tmp_path, "run", "--timeout", "0.3", "busybox", "sleep", "5")
        assert r.returncode == 137 and "timeout" in one_line(r.stderr) and "containerlab_magic.cli" not in modules
        # what needs the full CLI is declined and done by it: usage errors, --explain, -t
        for args in (["run", "--bogus", "busybox", "true"], ["run", "--explain", "busybox", "true"]):
            r, modules = cli_modules(tmp_path, *args)
            assert "containerlab_magic.cli" in modules, args
        assert "unrecognized arguments" in cli("run", "--bogus", "busybox", "true").stderr
        # Ctrl-C: stop (3 s grace: a PID 1 shell ignores TERM), then the status of a kill
        proc = subprocess.Popen([sys.executable, "-m", "containerlab_magic", "run", "--name", "quick-int", "busybox",
                                 "sh", "-c", "echo ready; sleep 60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            assert proc.stdout.readline() == "ready\n"
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=15) == 130
            assert "stopping quick-int (Ctrl-C again to kill)" in proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert "quick-int" not in cli("ps", "-a").stdout
    finally:
        cli("rm", "-f", "quick-keeper")


def test_explain_text_shows_each_steps_side_time_and_the_total():
    from containerlab_magic.cli import explain_text
    from containerlab_magic.runtime.plan import StepRecord as Step

    steps = [Step("cgroup", "mkdir /sys/fs/cgroup/memory/containerlab/abc", 1200, "shim"),
             Step("exec", "execve sh -c true", 35, "container")]
    assert explain_text(steps).splitlines() == [
        "#  STEP    SIDE       WHAT IT DOES                                  µs",
        "1  cgroup  shim       mkdir /sys/fs/cgroup/memory/containerlab/abc  1 200",
        "2  exec    container  execve sh -c true                             35",
        "total 1 235 µs",
    ]
    # a plan that did not run: no times, no total; a step named by its number shows it once
    assert explain_text([Step("1", "pivot_root", None, "")]).splitlines() == [
        "#  STEP  SIDE  WHAT IT DOES  µs", "1              pivot_root    -"]


def test_tty_gets_a_terminal_of_the_callers_size(no_leaks):
    import fcntl
    import pty
    import select
    import struct
    import termios

    main, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "containerlab_magic", "run", "-t", "busybox", "sh", "-c",
                             "tty; stty size"], stdin=secondary, stdout=secondary, stderr=secondary)
    os.close(secondary)
    out = b""
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and b"30 100" not in out:
            if select.select([main], [], [], 0.5)[0]:
                try:
                    out += os.read(main, 4096)
                except OSError:  # EIO: every writer has closed
                    break
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
    assert b"/dev/pts/" in out or b"/dev/console" in out, out
    assert b"30 100" in out, out
