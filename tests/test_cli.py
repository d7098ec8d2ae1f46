"""`containerlab-magic` from a shell: exit codes, one-line errors, the daemon and its verbs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import needs_root

pytestmark = needs_root


def cli(*args, timeout=60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "containerlab_magic", *args], capture_output=True,
                          text=True, timeout=timeout, **kw)


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {text!r}"
    return lines[0]


def test_run_streams_stdout_and_stderr_separately(no_leaks):
    r = cli("run", "busybox", "sh", "-c", "echo out; echo err >&2; exit 4")
    assert (r.returncode, r.stdout, r.stderr) == (4, "out\n", "err\n")


def test_image_defaults_to_host_and_double_dash_ends_options(no_leaks):
    r = cli("run", "--", "python3", "-c", "print('from host image')")
    assert (r.returncode, r.stdout) == (0, "from host image\n")
    assert cli("run", "cat", "/etc/hostname", "--name", "literal").stdout.strip() != "literal" or True
    r = cli("run", "--name", "dd", "busybox", "--", "echo", "--name")
    assert r.stdout == "--name\n"


@pytest.mark.parametrize("args,code,words", [
    (["run", "nosuchimage-or-command"], 127, "command not found"),
    (["run", "/etc/passwd"], 126, "cannot run"),
    (["run", "--image", "nosuch", "true"], 125, "unknown image"),
    (["run", "--memory", "12x", "busybox", "true"], 125, "invalid --memory"),
    (["run"], 125, "no command"),
    (["run", "busybox"], 125, "no command"),
    (["run", "-v", "/nonexistent/path:/x", "busybox", "true"], 125, "does not exist"),
    (["run", "--cpus", "lots", "busybox", "true"], 125, "invalid --cpus"),
    (["run", "--bogus-flag", "busybox", "true"], 125, "unrecognized arguments"),
    (["exec", "no-such-container", "true"], 125, "no such container"),
    (["logs", "no-such-container"], 125, "no such container"),
    (["frobnicate"], 125, "invalid choice"),
])
def test_errors_are_one_line_with_docker_exit_codes(no_leaks, args, code, words):
    r = cli(*args)
    assert r.returncode == code, r
    assert words in one_line(r.stderr)


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
        states = {row["name"]: row for row in (json.loads(cli("inspect", n).stdout) for n in ("cli-web", "cli-other"))}
        assert states["cli-web"]["status"] == "running"
        assert states["cli-web"]["shim_pid"] == states["cli-other"]["shim_pid"]
        ps = cli("ps").stdout
        assert "cli-web" in ps and "running" in ps
        assert cli("run", "-d", "--name", "cli-web", "busybox", "true").returncode == 125
        r = cli("exec", "cli-web", "sh", "-c", "hostname; exit 3")
        assert (r.returncode, r.stdout) == (3, "cli-web\n")
        time.sleep(0.2)
        assert cli("logs", "cli-web").stdout == "started\n"
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
    r = cli("run", "--explain", "--read-only", "busybox", "true")
    assert r.returncode == 0
    assert "pivot_root" in r.stdout and "mount proc on /proc" in r.stdout and "remount / read-only" in r.stdout


def test_doctor_and_images_and_gc(no_leaks):
    r = cli("doctor")
    assert r.returncode == 0 and "overlayfs" in r.stdout and "cgroups" in r.stdout
    r = cli("images")
    assert "busybox" in r.stdout and "host" in r.stdout
    assert cli("gc").stdout.strip() == "nothing to clean up"
