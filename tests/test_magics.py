"""The magics in a real IPython InteractiveShell, against real containers.

Cells are run with run_cell_magic/run_line_magic, which raise what the cell
raised, and with run_cell where what matters is what the user sees (one line,
no traceback).  Output is what the cell wrote to sys.stdout/sys.stderr.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import pytest
from conftest import leaks, needs_root, snapshot
from IPython.core.error import UsageError

pytestmark = needs_root


@pytest.fixture(scope="module")
def ip(module_no_leaks):
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython()
    shell.run_line_magic("load_ext", "containerlab_magic")
    magics = _magics(shell)
    magics.engine.start()  # the module's shim, before any test's leak snapshot
    yield shell
    shell.run_line_magic("unload_ext", "containerlab_magic")


@pytest.fixture
def clean(no_leaks, ip):
    magics = _magics(ip)
    saved = {k: getattr(magics, k) for k in ("default_image", "default_memory", "default_cpus",
                                              "default_pids_limit", "default_network", "output_limit")}
    yield
    for k, v in saved.items():
        setattr(magics, k, v)


def _magics(shell):
    from containerlab_magic.magics import _loaded

    return _loaded[id(shell)]


def cell(ip, line, body):
    return ip.run_cell_magic("container", line, body)


# ---------------------------------------------------------------- %%container


def test_output_goes_to_the_right_streams(ip, clean, capsys):
    cell(ip, "", "echo to-out; echo to-err >&2; printf 'a\\rb\\n'")
    out, err = capsys.readouterr()
    assert "to-out\n" in out and "a\rb\n" in out  # \r passed through: the frontend redraws the line
    assert "to-err\n" in err and "to-out" not in err


def test_cell_sees_its_own_isolated_world(ip, clean, capsys):
    cell(ip, "--hostname lab --image busybox", "hostname; echo pid=$$; [ -x /bin/ash ] && echo busybox")
    out = capsys.readouterr().out
    assert out.split() == ["lab", "pid=1", "busybox"]


def test_failure_is_one_line_without_traceback(ip, clean, capsys):
    from containerlab_magic.magics import CellFailed

    with pytest.raises(CellFailed, match=r"^exit 3$"):
        cell(ip, "", "exit 3")
    result = ip.run_cell("%%container\necho before; exit 4")
    assert isinstance(result.error_in_exec, CellFailed)
    out, err = capsys.readouterr()
    shown = out + err
    assert "exit 4" in shown and "Traceback" not in shown and "File " not in shown
    assert [line for line in shown.splitlines() if "exit 4" in line] == ["\x1b[0;31mexit 4\x1b[0m"]


def test_oom_kill_names_the_limit(ip, clean):
    from containerlab_magic.magics import CellFailed

    with pytest.raises(CellFailed, match=r"exit 137: killed, out of memory \(limit 16 MiB, peak"):
        cell(ip, "--memory 16M --python", "x = bytearray(64 << 20)")


def test_timeout_is_one_line(ip, clean):
    from containerlab_magic.magics import CellFailed

    with pytest.raises(CellFailed, match=r"timeout"):
        cell(ip, "--timeout 0.3", "sleep 5")


def test_bad_options_are_usage_errors(ip, clean, capsys):
    with pytest.raises(UsageError, match="unrecognized arguments: --bogus"):
        cell(ip, "--bogus", "true")
    with pytest.raises(UsageError, match="invalid --memory '12x'"):
        cell(ip, "--memory 12x", "true")
    with pytest.raises(UsageError, match="--in passes notebook variables to Python"):
        cell(ip, "--in a", "true")
    result = ip.run_cell("%%container --cpus lots\ntrue")
    assert isinstance(result.error_in_exec, UsageError)
    assert "Traceback" not in capsys.readouterr().err


def test_help_lists_the_options(ip, clean, capsys):
    from containerlab_magic.magics import ContainerMagics

    assert cell(ip, "--help", "true") is None  # IPython refuses a cell magic with an empty body
    out = capsys.readouterr().out
    assert ContainerMagics.container_cell.__doc__.startswith("usage: %%container")  # %%container?
    for option in ("--image", "--memory", "--pids-limit", "--python", "--in", "--out", "--stats", "--detach"):
        assert option in out


def test_output_beyond_the_cap_is_cut_with_one_notice(ip, clean, capsys):
    _magics(ip).output_limit = 1000
    cell(ip, "", "head -c 200000 /dev/zero | tr '\\0' x")
    out, err = capsys.readouterr()
    assert 900 <= len(out) <= 1000  # the cap counts stdout and stderr together
    cut = [line for line in err.splitlines() if "output cut" in line]
    assert len(cut) == 1 and re.fullmatch(r"\[containerlab: output cut at 1000 B; 19\d\.\d KiB more not shown\. "
                                          r"Raise %config ContainerMagics\.output_limit\]", cut[0])


def test_stats_footer(ip, clean, capsys):
    cell(ip, "--stats --memory 64M", "true")
    footer = capsys.readouterr().out.strip().splitlines()[-1]
    assert footer.startswith("exit 0 · ") and "of 64 MiB" in footer and "CPU" in footer


def test_python_cell_in_and_out_are_json(ip, clean, capsys):
    ip.user_ns["numbers"] = [1, 2, 3]
    ip.user_ns["label"] = "sum"
    cell(ip, "--python --in numbers,label --out answer", "answer = {label: sum(numbers)}\nprint('inside')")
    assert ip.user_ns["answer"] == {"sum": 6}
    assert capsys.readouterr().out == "inside\n"


def test_python_out_refuses_what_json_cannot_carry(ip, clean):
    from containerlab_magic.magics import CellFailed

    ip.user_ns["blob"] = object()
    with pytest.raises(UsageError, match="JSON-compatible"):
        cell(ip, "--python --in blob", "pass")
    with pytest.raises(CellFailed, match="exit 1"):
        cell(ip, "--python --out thing", "thing = {1, 2}")  # a set: not JSON; nothing is unpickled
    with pytest.raises(CellFailed):
        cell(ip, "--python --out missing", "x = 1")


def test_python_traceback_points_at_the_cell(ip, clean, capsys):
    from containerlab_magic.magics import CellFailed

    with pytest.raises(CellFailed, match="exit 1"):
        cell(ip, "--python", "x = 1\n1 / 0")
    assert 'File "<cell>", line 2' in capsys.readouterr().err


def test_out_of_a_shell_cell_is_the_result_object(ip, clean):
    cell(ip, "--out r --memory 32M", "true")
    r = ip.user_ns["r"]
    assert r.exit_code == 0 and r.ok and r.usage["memory_limit"] == 32 << 20
    assert "exit 0" in r._repr_html_() and "memory 32 MiB" in r._repr_html_()
    assert ip.user_ns["_container"] is r


def test_config_defaults_and_explicit_options_win(ip, clean, capsys):
    ip.run_line_magic("config", "ContainerMagics.default_image = 'busybox'")
    ip.run_line_magic("config", "ContainerMagics.default_memory = '48M'")
    cell(ip, "--stats", "[ -x /bin/ash ] && echo busybox")
    out = capsys.readouterr().out
    assert "busybox" in out and "of 48 MiB" in out
    cell(ip, "--image host --memory 40M --stats", "[ -x /bin/ash ] || echo host")
    out = capsys.readouterr().out
    assert "host" in out and "of 40 MiB" in out


def test_interrupt_stops_the_container_within_a_second(ip, clean):
    from containerlab_magic.magics import CellFailed

    before = snapshot()
    sent = []

    def interrupt():
        time.sleep(0.8)
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(CellFailed, match="^interrupted: container"):
        cell(ip, "--name sleeper", "sleep 60")
    assert time.monotonic() - sent[0] < 1.0
    assert not leaks(before, timeout=0.5)


# ---------------------------------------------------------------- %container


def test_detach_ps_logs_exec_stop_rm(ip, clean, capsys):
    cell(ip, "--detach --name bg --image busybox", "trap 'exit 0' TERM; echo hello; sleep 30 & wait")
    assert "bg started in the background" in capsys.readouterr().out
    table = ip.run_line_magic("container", "ps")
    assert "<table" in table._repr_html_() and "bg" in repr(table) and "running" in repr(table)
    ip.run_line_magic("container", "exec bg sh -c 'echo from-exec; hostname'")
    assert capsys.readouterr().out == "from-exec\nbg\n"
    ip.run_line_magic("container", "logs bg")
    assert capsys.readouterr().out == "hello\n"
    ip.run_line_magic("container", "stop -t 0.2 bg")
    assert "bg stopped" in capsys.readouterr().out
    assert "exited" in repr(ip.run_line_magic("container", "ps -a"))
    ip.run_line_magic("container", "logs -f bg")  # ended: returns at once
    ip.run_line_magic("container", "rm bg")
    assert "bg" not in repr(ip.run_line_magic("container", "ps -a"))


def test_verbs_report_one_line_errors(ip, clean):
    with pytest.raises(UsageError, match="invalid choice: 'frob'"):
        ip.run_line_magic("container", "frob")
    with pytest.raises(UsageError, match="no such container"):
        ip.run_line_magic("container", "stop nobody")
    with pytest.raises(UsageError, match="say what to run"):
        ip.run_line_magic("container", "exec nobody")


def test_network_verbs(ip, clean):
    assert "labnet" in repr(ip.run_line_magic("container", "network create --subnet 10.219.44.0/24 labnet"))
    assert "10.219.44.0/24" in repr(ip.run_line_magic("container", "network ls"))
    assert '"subnet": "10.219.44.0/24"' in repr(ip.run_line_magic("container", "network inspect labnet"))
    ip.run_line_magic("container", "network rm labnet")
    assert "labnet" not in repr(ip.run_line_magic("container", "network ls"))
    with pytest.raises(UsageError, match="10.300"):
        ip.run_line_magic("container", "network create --subnet 10.300.0.0/24 bad")


def test_images_doctor_gc(ip, clean):
    assert {"host", "busybox"} <= {row[0] for row in ip.run_line_magic("container", "images").rows}
    assert "cgroups" in repr(ip.run_line_magic("container", "doctor"))
    ip.run_line_magic("container", "gc")


# ---------------------------------------------------------------- %cgroup


def test_cgroup_shows_usage_files_and_changes_limits(ip, clean):
    cell(ip, "--detach --name cg --memory 64M --pids-limit 20", "trap 'exit 0' TERM; sleep 30 & wait")
    try:
        report = ip.run_line_magic("cgroup", "cg")
        text = repr(report)
        assert "64 MiB" in text and "20" in text and "<table" in report._repr_html_()
        files = dict(report.parts[1].rows)
        limit_file = "memory.max" if "memory.max" in files else "memory.limit_in_bytes"
        assert files[limit_file] == str(64 << 20)
        change = ip.run_line_magic("cgroup", "cg memory=128M pids=64")
        assert ("memory", "64 MiB", "128 MiB") in change.rows and ("pids-limit", "20", "64") in change.rows
        files = dict(ip.run_line_magic("cgroup", "cg").parts[1].rows)
        assert files[limit_file] == str(128 << 20)
        stats = ip.run_line_magic("container", "stats")
        assert [row[0] for row in stats.rows] == ["cg"] and stats.rows[0][3] == "128 MiB"
        with pytest.raises(UsageError, match="not KEY=VALUE"):
            ip.run_line_magic("cgroup", "cg memory")
    finally:
        ip.run_line_magic("container", "stop -t 5 cg")  # the trap ends it: no SIGKILL racing the cgroup's removal
        ip.run_line_magic("container", "rm cg")


def test_link_shaping_is_set_and_shown_like_limits(ip, clean):
    """net_rate=... in %cgroup changes the link live; %container stats and %cgroup NAME show it."""
    cell(ip, "--detach --name shaped --net bridge --net-rate 2mbit", "trap 'exit 0' TERM; sleep 30 & wait")
    try:
        stats = ip.run_line_magic("container", "stats shaped")
        row = dict(zip(stats.headers, stats.rows[0]))
        assert row["LINK"] == "2 Mbit/s" and " / " in row["NET I/O"]
        change = ip.run_line_magic("cgroup", "shaped net_rate=8mbit")
        assert ("link", "2 Mbit/s", "8 Mbit/s") in change.rows
        report = repr(ip.run_line_magic("cgroup", "shaped"))
        assert "network (bridge)" in report and "8 Mbit/s" in report
        with pytest.raises(UsageError, match="--net-rate"):
            ip.run_line_magic("cgroup", "shaped net_rate=fast")
    finally:
        ip.run_line_magic("container", "stop -t 5 shaped")
        ip.run_line_magic("container", "rm shaped")


def test_cgroup_without_a_name_shows_the_kernel_and_the_lab(ip, clean):
    report = ip.run_line_magic("cgroup", "")
    assert "/proc/self/cgroup" in repr(report) and "the lab's subtree" in repr(report)


def test_watch_monitor_runs_in_the_background_until_the_end(ip, clean):
    cell(ip, "--detach --name watched --memory 64M --python",
         "import time\nx = bytearray(20 << 20)\ntime.sleep(1.5)")
    ip.run_line_magic("cgroup", "watched --watch")
    monitor = _magics(ip).monitors[-1]
    assert monitor.running  # the magic returned while the monitor goes on
    deadline = time.monotonic() + 10
    while monitor.running and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not monitor.running
    assert "the container ended" in repr(monitor)
    assert max(m for _, m, _ in monitor.samples) > 20 << 20
    assert monitor.memory.max == 64 << 20 and "<svg" in monitor.plot.value
    ip.run_line_magic("container", "rm watched")


def test_watch_monitor_shows_the_link_of_a_network_container(ip, clean):
    """A container sending 150 KiB to the host over a 1 Mbit/s link: the monitor shows
    its throughput, the bytes sent in all, and the shaping it runs under.  The host pulls
    them through the container's published port (the host filter keeps a container off
    every other port of the host)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    received = []

    def drain():
        deadline = time.monotonic() + 20
        while sum(received) < 150 << 10 and time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                    while sum(received) < 150 << 10 and (data := conn.recv(65536)):
                        received.append(len(data))
            except OSError:
                pass
            time.sleep(0.1)  # not listening yet: the proxy closed us

    reader = threading.Thread(target=drain, daemon=True)
    try:
        cell(ip, f"--detach --name talker --image busybox --net bridge --net-rate 1mbit -p {port}:5000",
             "dd if=/dev/zero bs=1k count=150 2>/dev/null | nc -l -p 5000")
        reader.start()
        ip.run_line_magic("cgroup", "talker --watch")
        monitor = _magics(ip).monitors[-1]
        deadline = time.monotonic() + 20
        while monitor.running and time.monotonic() < deadline:
            time.sleep(0.1)
        reader.join(5)
        assert sum(received) == 150 << 10
        text = monitor.net_text.value
        assert "link: 1 Mbit/s" in text and "out " in text, text
        sent = text.split(" in all")[0].split(" / ")[-1]  # NET I/O: received / sent, at the last sample
        assert sent.endswith("KiB") and 0 < float(sent.split()[0]) <= 160, text
    finally:
        ip.run_line_magic("container", "rm -f talker")


def test_panel_values_become_the_defaults(ip, clean, capsys):
    panel = ip.run_line_magic("container", "panel")
    panel.memory.value = "96M" if "96M" in [v for _, v in panel.memory.options] else "128M"
    panel.image.value = "busybox"
    panel.pids.value = 32
    assert "--memory 128M" in repr(panel) and "--pids-limit 32" in panel.summary.value
    cell(ip, "--stats", "[ -x /bin/ash ] && echo busybox")
    out = capsys.readouterr().out
    assert "busybox" in out and "of 128 MiB" in out
    cell(ip, "--memory 32M --stats", "true")  # an explicit option still wins
    assert "of 32 MiB" in capsys.readouterr().out


def test_unload_stops_every_container_of_the_kernel(ip, no_leaks):
    from containerlab_magic.magics import _loaded

    cell(ip, "--detach --name doomed", "sleep 60")
    engine = _magics(ip).engine
    assert [r["name"] for r in engine.ps()] == ["doomed"]
    ip.run_line_magic("unload_ext", "containerlab_magic")
    assert id(ip) not in _loaded and "container" not in ip.magics_manager.magics["cell"]
    assert engine.ps(all=True) == []
    ip.run_line_magic("load_ext", "containerlab_magic")  # for the module's teardown; its engine starts lazily
