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
from conftest import ipython_shell, leaks, needs_root, snapshot, wait_for_container_process
from IPython.core.error import UsageError

pytestmark = needs_root


@pytest.fixture(scope="module")
def ip(module_no_leaks):
    shell = ipython_shell()
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


def test_a_child_killed_for_memory_is_said_apart_from_the_exit_status(ip, clean, capsys):
    cell(ip, "--memory 32M --out r", "python3 -c 'x = bytearray(100 << 20)' 2>/dev/null; echo survived")
    out, err = capsys.readouterr()
    assert out == "survived\n"
    assert re.fullmatch(r"\[exit 0; 1 process killed for memory \(limit 32 MiB, peak [\d.]+ MiB\)\]\n", err), err
    r = ip.user_ns["r"]
    assert r.ok and r.exit_code == 0 and r.memory_kills == 1
    cell(ip, "--memory 32M --stats", "python3 -c 'x = bytearray(100 << 20)' 2>/dev/null; true")
    assert capsys.readouterr().out.startswith("exit 0; 1 process killed for memory (limit 32 MiB")


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
    import glob

    from containerlab_magic.runtime.paths import private_io_root

    folders = set(glob.glob(os.path.join(private_io_root(), "containerlab-io-*")))
    with pytest.raises(UsageError, match=r"^unknown image 'no-such-image'; local images: host, "):
        cell(ip, "--image no-such-image --python", "pass")
    with pytest.raises(UsageError, match=r"^invalid --memory 'lots'"):
        cell(ip, "--memory lots --python", "pass")
    assert set(glob.glob(os.path.join(private_io_root(), "containerlab-io-*"))) == folders  # no cell folder left
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
    cell(ip, "--python --in numbers,label --out answer", "answer = {label: sum(numbers)}\nprint('inside: héllo ✓')")
    assert ip.user_ns["answer"] == {"sum": 6}
    assert capsys.readouterr().out == "inside: héllo ✓\n"


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


class _Recorder:
    """Stands in for sys.stdout and sys.stderr at once: every write, with its stream and arrival time."""

    def __init__(self, name: str, log: list):
        self.name, self.log = name, log

    def write(self, text: str) -> int:
        self.log.append((time.monotonic(), self.name, text))
        return len(text)

    def flush(self) -> None:
        pass


def record_streams(monkeypatch) -> list:
    """From here on in the test (pytest's own capture resets sys.stdout between a fixture and the test)."""
    log: list = []
    monkeypatch.setattr("sys.stdout", _Recorder("stdout", log))
    monkeypatch.setattr("sys.stderr", _Recorder("stderr", log))
    return log


def test_python_output_streams_as_it_is_printed(ip, clean, monkeypatch):
    """-u: each print reaches the cell when it is made, not when the container ends."""
    recorded = record_streams(monkeypatch)
    cell(ip, "--python", "import time\nfor i in range(3):\n    print('tick', i)\n    time.sleep(0.4)")
    ticks = [t for t, stream, text in recorded if "tick" in text]
    assert len(ticks) == 3, recorded  # three writes, not one block at the end
    assert ticks[-1] - ticks[0] > 0.6, recorded


def test_python_stdout_and_stderr_keep_their_order(ip, clean, monkeypatch):
    from containerlab_magic.magics import CellFailed

    recorded = record_streams(monkeypatch)
    with pytest.raises(CellFailed, match="^exit 1$"):
        cell(ip, "--python", "print('before')\n1 / 0")
    text = "".join(text for _, _, text in recorded)
    assert text.index("before") < text.index("Traceback"), text
    assert [s for _, s, t in recorded if "before" in t] == ["stdout"]


def test_python_traceback_shows_only_the_cells_frames(ip, clean, capsys):
    from containerlab_magic.magics import CellFailed

    with pytest.raises(CellFailed, match="exit 1"):
        cell(ip, "--python", "def f():\n    return 1 / 0\n\nf()")
    err = capsys.readouterr().err
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', err)
    assert frames == [("<cell>", "4", "<module>"), ("<cell>", "2", "f")], err
    assert "    return 1 / 0\n" in err and "ZeroDivisionError: division by zero" in err
    with pytest.raises(CellFailed, match="exit 1"):
        cell(ip, "--python", "x = (")
    assert re.search(r'File "<cell>", line 1\n +x = \(\n', capsys.readouterr().err)


def test_python_cell_runs_as_main_from_the_working_directory(ip, clean, capsys):
    cell(ip, "--python -w /tmp", "import os, sys, pickle\n"
         "open('mod_in_workdir.py', 'w').write('X = 42')\nimport mod_in_workdir\n"
         "class Point:\n    pass\n"
         "print(__name__, sys.argv, os.getcwd(), mod_in_workdir.X, type(pickle.loads(pickle.dumps(Point()))).__name__)")
    assert capsys.readouterr().out == "__main__ ['<cell>'] /tmp 42 Point\n"


def test_python_cell_command_is_short_and_its_folder_goes_when_it_ends(ip, clean, capsys):
    from containerlab_magic.python_cell import COMMAND

    magics = _magics(ip)
    cell(ip, "--python --detach --name pyd", "import time\ntime.sleep(0.5)")
    capsys.readouterr()
    rows = {row[1]: row for row in ip.run_line_magic("container", "ps").rows}
    assert rows["pyd"][3] == "python3 -u /run/containerlab-io/cell.py" == " ".join(COMMAND)
    folder = next(iter(magics._folders.values())).path
    assert os.path.isfile(os.path.join(folder, "cell.py"))  # the container still needs it
    magics.engine.wait("pyd")
    ip.run_line_magic("container", "rm pyd")  # any magic after the end removes the folder
    assert not os.path.exists(folder) and not magics._folders


def test_python_cell_as_another_user_brings_its_value_back(ip, clean, capsys):
    cell(ip, "--python -u 65534 --out who", "import os\nwho = os.getuid()")
    assert ip.user_ns["who"] == 65534
    folder_modes = []
    magics = _magics(ip)
    cell(ip, "--python --detach --name mode-check", "import time\ntime.sleep(0.3)")
    folder_modes.append(os.stat(next(iter(magics._folders.values())).path).st_mode & 0o7777)
    assert folder_modes == [0o755]  # root's cell: nobody else may write into its folder
    magics.engine.wait("mode-check")
    ip.run_line_magic("container", "rm mode-check")


def test_python_in_takes_large_values_and_out_refuses_detach(ip, clean, capsys):
    ip.user_ns["big"] = "x" * (300 << 10)  # more than one argv string may hold (128 KiB)
    cell(ip, "--python --in big --out n", "n = len(big)")
    assert ip.user_ns["n"] == 300 << 10
    with pytest.raises(UsageError, match="--out .* --detach"):
        cell(ip, "--python --detach --out n", "n = 1")


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
    handler = signal.getsignal(signal.SIGINT)
    sent = []

    def interrupt():
        wait_for_container_process("sleep")  # the cell is blocked on its running container
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(CellFailed, match="^interrupted: container"):
        cell(ip, "--name sleeper", "sleep 60")
    assert time.monotonic() - sent[0] < 1.0
    assert not leaks(before, timeout=0.5)
    assert signal.getsignal(signal.SIGINT) is handler  # the kernel's own, as before the cell


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


def test_every_verb_of_the_shell_is_a_magic():
    """One grammar: the verbs (and their options) come from parsers.py for both faces."""
    from containerlab_magic import parsers
    from containerlab_magic.magic_verbs import VERBS
    from containerlab_magic.magics import line_parser

    assert set(parsers.VERBS) <= set(VERBS) and set(VERBS) - set(parsers.VERBS) == {"panel"}
    verbs = line_parser()._subparsers._group_actions[0].choices
    assert set(verbs) == set(VERBS)
    assert "--tty" not in verbs["exec"]._option_string_actions  # a notebook has no terminal


@pytest.mark.parametrize("form", ["", "-s KILL", "-s SIGKILL", "-s 9", "-s kill"])
def test_kill_sends_sigkill_in_every_spelling(ip, clean, capsys, form):
    cell(ip, "--detach --name victim", "trap '' TERM; sleep 30")  # ignores TERM: only KILL ends it
    try:
        ip.run_line_magic("container", f"kill {form} victim")
        assert "victim sent SIGKILL" in capsys.readouterr().out
        waited = ip.run_line_magic("container", "wait victim")
        assert waited.rows == [("victim", "137")]
        assert "exited (137)" in repr(ip.run_line_magic("container", "ps -a"))
    finally:
        ip.run_line_magic("container", "rm -f victim")


def test_kill_refuses_a_bad_signal_before_touching_anything(ip, clean):
    cell(ip, "--detach --name target", "trap 'exit 0' TERM; sleep 30 & wait")
    try:
        with pytest.raises(UsageError, match=r"^unknown signal 999: give a number from 1 to \d+"):
            ip.run_line_magic("container", "kill -s 999 target")
        with pytest.raises(UsageError, match=r"^unknown signal 'BOGUS'"):
            ip.run_line_magic("container", "kill -s BOGUS target")
        assert [row[1] for row in ip.run_line_magic("container", "ps").rows] == ["target"]  # still running
        ip.run_line_magic("container", "kill -s TERM target")
        assert ip.run_line_magic("container", "wait target").rows == [("target", "0")]
    finally:
        ip.run_line_magic("container", "rm -f target")


def test_inspect_top_port_cp_pause_update_and_filters(ip, clean, capsys, tmp_path):
    import json
    import socket

    with socket.socket() as s:  # a free port on loopback for -p
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cell(ip, f"--detach --name box --image busybox --net bridge -p 127.0.0.1:{port}:80 --label course=net101",
         "trap 'exit 0' TERM; sleep 30 & wait")
    try:
        doc = json.loads(repr(ip.run_line_magic("container", "inspect box")))[0]
        assert doc["Name"] == "box" and doc["State"]["Running"] and doc["Config"]["Labels"] == {"course": "net101"}
        top = ip.run_line_magic("container", "top box")
        assert top.headers == ("PID", "USER", "TIME", "CMD") and any("sleep 30" in row[3] for row in top.rows)
        assert "<table" in top._repr_html_()
        assert ip.run_line_magic("container", "port box").rows == [("80/tcp", f"127.0.0.1:{port}")]
        assert [r[1] for r in ip.run_line_magic("container", "ps --filter label=course=net101").rows] == ["box"]
        assert ip.run_line_magic("container", "ps --filter label=course=other").rows == []
        with pytest.raises(UsageError, match="invalid filter 'colour=red'"):
            ip.run_line_magic("container", "ps --filter colour=red")

        (tmp_path / "note.txt").write_text("from the host\n")
        capsys.readouterr()
        ip.run_line_magic("container", f"cp {tmp_path}/note.txt box:/tmp/note.txt")
        assert capsys.readouterr().out.startswith("copied 1 file(s)")
        ip.run_line_magic("container", "exec box cat /tmp/note.txt")
        assert capsys.readouterr().out == "from the host\n"
        ip.run_line_magic("container", f"cp box:/etc/hostname {tmp_path}/hostname")
        assert (tmp_path / "hostname").read_text() == "box\n"
        with pytest.raises(UsageError, match="no such container"):
            ip.run_line_magic("container", f"cp {tmp_path}/note.txt nobody:/tmp/")

        ip.run_line_magic("container", "pause box")
        assert "running (paused)" in repr(ip.run_line_magic("container", "ps"))
        ip.run_line_magic("container", "unpause box")
        change = ip.run_line_magic("container", "update box --memory 64M --pids-limit 30")
        assert ("memory", "unlimited", "64 MiB") in change.rows and ("pids-limit", "unlimited", "30") in change.rows
    finally:
        ip.run_line_magic("container", "stop -t 5 box")
        ip.run_line_magic("container", "rm box")


def test_run_flags_of_the_shared_parser(ip, clean, capsys, tmp_path):
    env_file = tmp_path / "course.env"
    env_file.write_text("# the course\nCOURSE=net101\n")
    cell(ip, f"--env-file {env_file} -e WEEK=3", "echo $COURSE week $WEEK")
    assert capsys.readouterr().out == "net101 week 3\n"
    with pytest.raises(UsageError, match=r"^--env-file /nonexistent.env: no such file"):
        cell(ip, "--env-file /nonexistent.env", "true")
    with pytest.raises(UsageError, match=r"^unsupported --security-opt 'bogus'"):
        cell(ip, "--security-opt bogus", "true")
    with pytest.raises(UsageError, match="unrecognized arguments: -t"):  # no terminal in a notebook
        cell(ip, "-t", "true")


def test_explain_table_from_step_records():
    """The table's shape, from StepRecords built by hand (the runtime's own are checked below)."""
    from dataclasses import dataclass

    from containerlab_magic.display import ExplainTable

    @dataclass
    class StepRecord:
        step: str
        description: str
        duration_us: int | None
        side: str

    steps = [StepRecord("cgroup", "mkdir /sys/fs/cgroup/memory/lab/abc", 300, "shim"),
             StepRecord("clone", "clone(CLONE_NEWPID|CLONE_NEWNS)", 100, "shim"),
             StepRecord("exec", "execve /bin/sh", 600, "container")]
    table = ExplainTable(steps, title="run")
    text = repr(table)
    assert text.splitlines()[1].split() == ["#", "STEP", "SIDE", "WHAT", "IT", "DOES", "µs"]
    assert "mkdir /sys/fs/cgroup/memory/lab/abc" in text and text.endswith("total 1 000 µs")
    html = table._repr_html_()
    bars = re.findall(r"left:([\d.]+)%;width:([\d.]+)%", html)
    assert bars == [("0.0", "30.0"), ("30.0", "10.0"), ("40.0", "60.0")]  # a timeline: each starts where the last ended
    assert "<tfoot><tr><th colspan='4' style='text-align:right'>total</th><th>1 000</th>" in html
    plan = ExplainTable([StepRecord("clone", "clone(...)", None, "shim")])
    assert "left:" not in plan._repr_html_() and "total" not in repr(plan)  # not run: no times, no bars


def test_explain_shows_the_plan_or_the_timed_steps(ip, clean, capsys):
    from containerlab_magic.display import ExplainTable

    before = snapshot()
    plan = cell(ip, "--explain --dry-run --image busybox --memory 32M", "echo never")
    assert isinstance(plan, ExplainTable) and plan.records and "not run: --dry-run" in plan.title
    assert "never" not in capsys.readouterr().out and not leaks(before, timeout=0.2)  # nothing ran
    with pytest.raises(UsageError, match="--dry-run .* add --explain"):
        cell(ip, "--dry-run", "true")
    shown = cell(ip, "--explain --image busybox", "echo ran")
    out = capsys.readouterr().out
    # the runtime's start plan: it ran, then the steps with their times
    assert shown is None and out.startswith("ran\n") and re.search(r"total [\d ]+ µs", out)


def test_ps_keeps_the_exit_code_and_memory_kills_apart(ip, clean):
    """A child killed for memory while PID 1 exits 0: 'exited (0)', and the kill said apart."""
    cell(ip, "--detach --name survivor --memory 32M",
         "python3 -c 'x = bytearray(100 << 20)' 2>/dev/null; exit 0")
    try:
        assert ip.run_line_magic("container", "wait survivor").rows == [("survivor", "0")]
        status = next(row[4] for row in ip.run_line_magic("container", "ps -a").rows if row[1] == "survivor")
        assert re.fullmatch(r"exited \(0\) \d+s ago; 1 process killed for memory", status), status
    finally:
        ip.run_line_magic("container", "rm survivor")


def test_verbs_act_on_every_container_and_report_the_missing_ones(ip, clean, capsys):
    """As docker: `rm a nobody b` removes a and b, then says nobody is missing, in one line."""
    import json

    for name in ("first", "second"):
        cell(ip, f"--detach --name {name}", "trap 'exit 0' TERM; sleep 30 & wait")
    capsys.readouterr()
    try:
        with pytest.raises(UsageError, match=r"^no such container: nobody\b") as missing:
            ip.run_line_magic("container", "inspect first nobody")
        assert "\n" not in str(missing.value)
        shown = capsys.readouterr().out  # the document found, shown before the error
        assert [doc["Name"] for doc in json.loads(shown)] == ["first"]
        with pytest.raises(UsageError, match=r"^no such container: nobody\b.*; no such container: ghost\b"):
            ip.run_line_magic("container", "stop -t 5 first nobody second ghost")
        assert capsys.readouterr().out == "first stopped\nsecond stopped\n"
        with pytest.raises(UsageError, match=r"^no such container: nobody\b"):
            ip.run_line_magic("container", "rm first nobody second")
        assert capsys.readouterr().out == "first removed\nsecond removed\n"
        assert ip.run_line_magic("container", "ps -a").rows == []
    finally:
        for name in ("first", "second"):
            try:
                ip.run_line_magic("container", f"rm -f {name}")
            except UsageError:
                pass  # removed by the test


def test_network_verbs(ip, clean):
    assert "labnet" in repr(ip.run_line_magic("container", "network create --subnet 10.219.44.0/24 labnet"))
    assert "10.219.44.0/24" in repr(ip.run_line_magic("container", "network ls"))
    assert '"subnet": "10.219.44.0/24"' in repr(ip.run_line_magic("container", "network inspect labnet"))
    ip.run_line_magic("container", "network rm labnet")
    assert "labnet" not in repr(ip.run_line_magic("container", "network ls"))
    with pytest.raises(UsageError, match="10.300"):
        ip.run_line_magic("container", "network create --subnet 10.300.0.0/24 bad")


def test_images_doctor_gc(ip, clean):
    from IPython.utils.capture import capture_output

    with capture_output() as shown:  # with stored images in the data root, the table is displayed and a
        result = ip.run_line_magic("container", "images")  # layer chart returned (other modules store some)
    tables = [result] + [o for o in shown.outputs]
    text = " ".join(repr(t) if not hasattr(t, "data") else t.data.get("text/plain", "") for t in tables)
    rows = getattr(result, "rows", None)
    assert ({"host", "busybox"} <= {row[0] for row in rows}) if rows is not None else ("busybox" in text and "host" in text)
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
        row = dict(zip(stats.headers, stats.rows[0]))
        assert [row[0] for row in stats.rows] == ["cg"] and row["MEM USAGE / LIMIT"].endswith(" / 128 MiB")
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
        with pytest.raises(UsageError, match="^invalid net_rate='fast'"):
            ip.run_line_magic("cgroup", "shaped net_rate=fast")
    finally:
        ip.run_line_magic("container", "stop -t 5 shaped")
        ip.run_line_magic("container", "rm shaped")


def test_cgroup_without_a_name_shows_the_kernel_and_the_lab(ip, clean):
    report = ip.run_line_magic("cgroup", "")
    assert "/proc/self/cgroup" in repr(report) and "the lab's subtree" in repr(report)


WAIT_FOR = "import os, time\nwhile not os.path.exists('/sync/{0}'):\n    time.sleep(0.01)\n"  # the test says when


def test_watch_monitor_runs_in_the_background_until_the_end(ip, clean, tmp_path):
    cell(ip, f"--detach --name watched --memory 64M --python -v {tmp_path}:/sync",
         "x = bytearray(20 << 20)\n" + WAIT_FOR.format("done"))
    ip.run_line_magic("cgroup", "watched --watch")
    monitor = _magics(ip).monitors[-1]
    assert monitor.running  # the magic returned while the monitor goes on
    deadline = time.monotonic() + 10
    while (len(monitor.samples) < 2 or not any(m > 20 << 20 for _, m, _ in monitor.samples)) \
            and time.monotonic() < deadline:  # two samples make a line
        time.sleep(0.05)
    assert monitor.running and max(m for _, m, _ in monitor.samples) > 20 << 20
    (tmp_path / "done").touch()
    _wait_until_done(monitor)
    assert "the container ended" in repr(monitor)
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


def _wait_until_done(monitor, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while monitor.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not monitor.running, "the monitor still runs"


def test_watch_monitor_ends_with_the_oom_kill_that_ended_the_container(ip, clean, tmp_path):
    """The kill comes after the last sample: the monitor reads the final counters before closing."""
    cell(ip, f"--detach --name oomed --memory 32M --python -v {tmp_path}:/sync",
         WAIT_FOR.format("go") + "x = bytearray(100 << 20)")
    try:
        ip.run_line_magic("cgroup", "oomed --watch")
        monitor = _magics(ip).monitors[-1]
        (tmp_path / "go").touch()
        _wait_until_done(monitor)
        assert len(monitor.ooms) == 1, repr(monitor)
        assert "OOM kill at" in monitor.events.value and "stroke='#b00'" in monitor.plot.value
        assert repr(monitor).endswith("; OOM kills 1 (the container ended)"), repr(monitor)
    finally:
        ip.run_line_magic("container", "rm -f oomed")


def test_watch_monitor_counts_each_child_killed_for_memory_once(ip, clean, tmp_path):
    """Three children killed for memory while PID 1 lives on: three marks, none counted twice at the end."""
    kill_child = "subprocess.run([sys.executable, '-c', 'bytearray(100 << 20)'], stderr=subprocess.DEVNULL)\n"
    cell(ip, f"--detach --name parent --memory 32M --python -v {tmp_path}:/sync",
         "import subprocess, sys\n" + WAIT_FOR.format("go") + kill_child * 3 + WAIT_FOR.format("done"))
    try:
        ip.run_line_magic("cgroup", "parent --watch")
        monitor = _magics(ip).monitors[-1]
        (tmp_path / "go").touch()
        deadline = time.monotonic() + 15
        while len(monitor.ooms) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(monitor.ooms) == 3, repr(monitor)
        (tmp_path / "done").touch()
        _wait_until_done(monitor)
        assert len(monitor.ooms) == 3 and repr(monitor).endswith("; OOM kills 3 (the container ended)")
        assert ip.run_line_magic("container", "wait parent").rows == [("parent", "0")]
    finally:
        ip.run_line_magic("container", "rm -f parent")


def test_watch_monitor_says_what_has_no_limit(ip, clean):
    """No limit: a figure and 'no ... limit', never a bar against a made-up maximum."""
    cell(ip, "--detach --name free --pids-limit 50", "trap 'exit 0' TERM; sleep 30 & wait")
    try:
        ip.run_line_magic("cgroup", "free --watch")
        monitor = _magics(ip).monitors[-1]
        deadline = time.monotonic() + 10
        while "pids" not in repr(monitor) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert re.fullmatch(r"[\d.]+% \(no CPU limit\)", monitor.cpu_text.value), monitor.cpu_text.value
        assert monitor.memory_text.value.startswith(tuple("0123456789")) and "(no memory limit)" in \
            monitor.memory_text.value
        assert monitor.memory.layout.display == "none"  # no memory bar without a memory limit
        assert re.fullmatch(r"\d of 50", monitor.pids_text.value) and monitor.pids.max == 50
        assert monitor.pids.layout.display is None
        monitor.stop()
        _wait_until_done(monitor)
    finally:
        ip.run_line_magic("container", "stop -t 5 free")
        ip.run_line_magic("container", "rm free")
    cell(ip, "--detach --name capped --cpus 0.5 --memory 64M", "trap 'exit 0' TERM; sleep 30 & wait")
    try:
        ip.run_line_magic("cgroup", "capped --watch")
        monitor = _magics(ip).monitors[-1]
        deadline = time.monotonic() + 10
        while "pids" not in repr(monitor) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert re.fullmatch(r"[\d.]+% of 0.5 CPUs \(50%\)", monitor.cpu_text.value), monitor.cpu_text.value
        # No --pids-limit: the lab's default (1024 tasks, CONTAINERLAB_DEFAULT_PIDS_LIMIT) still
        # holds a fork bomb in its group, and the monitor shows it as the limit it is.
        assert re.fullmatch(r"\d+ of 1024", monitor.pids_text.value), monitor.pids_text.value
        assert monitor.pids.layout.display is None and monitor.memory.layout.display is None
        monitor.stop()
        _wait_until_done(monitor)
    finally:
        ip.run_line_magic("container", "stop -t 5 capped")
        ip.run_line_magic("container", "rm capped")


def test_cgroup_errors_name_what_the_user_typed(ip, clean):
    cell(ip, "--detach --name typed", "trap 'exit 0' TERM; sleep 30 & wait")
    try:
        with pytest.raises(UsageError, match=r"^invalid memory='banana': write a number of bytes"):
            ip.run_line_magic("cgroup", "typed memory=banana")
        with pytest.raises(UsageError, match=r"^invalid pids=0: give "):
            ip.run_line_magic("cgroup", "typed pids=0")
        with pytest.raises(UsageError, match=r"^invalid cpu-shares='many'"):
            ip.run_line_magic("cgroup", "typed cpu-shares=many")
    finally:
        ip.run_line_magic("container", "stop -t 5 typed")
        ip.run_line_magic("container", "rm typed")


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


def test_loading_again_changes_nothing(ip, clean, capsys):
    """The lab's kernel loads containerlab_magic.kernel at start; a notebook's own %load_ext comes after."""
    from containerlab_magic.magics import ContainerMagics

    magics = _magics(ip)
    ip.run_line_magic("load_ext", "containerlab_magic.kernel")
    assert _magics(ip) is magics and capsys.readouterr() == ("", "")
    assert [c for c in ip.configurables if isinstance(c, ContainerMagics)] == [magics]
    ip.run_line_magic("config", "ContainerMagics.default_image = 'busybox'")
    assert magics.default_image == "busybox"


def test_unload_stops_every_container_of_the_kernel(ip, no_leaks):
    from containerlab_magic.magics import _loaded

    cell(ip, "--detach --name doomed", "sleep 60")
    engine = _magics(ip).engine
    assert [r["name"] for r in engine.ps()] == ["doomed"]
    ip.run_line_magic("unload_ext", "containerlab_magic")
    assert id(ip) not in _loaded and "container" not in ip.magics_manager.magics["cell"]
    assert engine.ps(all=True) == []
    ip.run_line_magic("reload_ext", "containerlab_magic")  # for the module's teardown; its engine starts lazily
    from containerlab_magic.magics import ContainerMagics

    assert [c for c in ip.configurables if isinstance(c, ContainerMagics)] == [_magics(ip)]

