"""The commands layer and the shared parsers and formats, each at its own level.

Parsers, formats and the in-root path walker need no containers; the verbs run
against a real Engine (namespaces, cgroups, overlays), as the faces use them.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from conftest import needs_root
from containerlab_magic import commands, formats, parsers
from containerlab_magic.commands.inroot import Root
from containerlab_magic.runtime.errors import Conflict, NotFound, SpecError
from containerlab_magic.runtime.spec import ContainerSpec, Limits, PortMap
from containerlab_magic.runtime.state import wait_for

# ---------------------------------------------------------------- parsers (no root needed)


@pytest.mark.parametrize("text", ["KILL", "SIGKILL", "kill", "sigkill", "9", " 9 "])
def test_every_spelling_of_sigkill(text):
    assert parsers.parse_signal(text) == signal.SIGKILL


@pytest.mark.parametrize("text", ["999", "0", "65", "BOGUS", "SIGBOGUS", "", "-9", "9.0"])
def test_bad_signals_are_one_line(text):
    with pytest.raises(SpecError) as err:
        parsers.parse_signal(text)
    assert "\n" not in str(err.value) and "signal" in str(err.value)


def test_other_signals_by_name_and_number():
    assert parsers.parse_signal("term") == signal.SIGTERM
    assert parsers.parse_signal("SIGHUP") == signal.SIGHUP
    assert parsers.parse_signal("15") == signal.SIGTERM
    assert parsers.parse_signal(signal.SIGRTMAX) == signal.SIGRTMAX


def test_filters_parse_and_refuse():
    got = parsers.parse_filters(["label=a=b", "label=a", "name=web", "status=exited", "id=ab12"])
    assert [(f.key, f.value) for f in got] == [("label", "a=b"), ("label", "a"), ("name", "web"),
                                               ("status", "exited"), ("id", "ab12")]
    for bad, words in (("colour=red", "invalid filter"), ("name", "invalid filter"),
                       ("status=sleeping", "status is one of"), ("label==v", "label=KEY")):
        with pytest.raises(SpecError, match=words):
            parsers.parse_filters([bad])


def test_labels():
    assert parsers.parse_labels(["a=b", "c", "d=e=f", "e="]) == (("a", "b"), ("c", ""), ("d", "e=f"), ("e", ""))
    for bad in ("=v", " a=b", "a b=c"):
        with pytest.raises(SpecError, match="invalid label"):
            parsers.parse_labels([bad])
    with pytest.raises(SpecError, match="invalid label key"):
        ContainerSpec(["true"], labels={"": "x"})


def test_env_file_is_dockers_format(tmp_path, monkeypatch):
    monkeypatch.setenv("FROM_CALLER", "caller's value")
    path = tmp_path / "env"
    path.write_text("# a comment\n\nA=1\n  B=two words\nFROM_CALLER\nC=\"quoted\"\nD=x=y\n")
    assert parsers.read_env_file(str(path)) == ["A=1", "B=two words", "FROM_CALLER", 'C="quoted"', "D=x=y"]
    missing = tmp_path / "nope"
    with pytest.raises(SpecError, match=f"--env-file {missing}: no such file"):
        parsers.read_env_file(str(missing))
    path.write_text("=x\n")
    with pytest.raises(SpecError, match="line 1"):
        parsers.read_env_file(str(path))


def test_security_opts(tmp_path):
    assert parsers.parse_security_opts([]) == {}
    assert parsers.parse_security_opts(["no-new-privileges"]) == {"no_new_privileges": True}
    assert parsers.parse_security_opts(["no-new-privileges=false"]) == {"no_new_privileges": False}
    assert parsers.parse_security_opts(["no-new-privileges:true"]) == {"no_new_privileges": True}
    assert parsers.parse_security_opts(["seccomp=unconfined"]) == {"seccomp": "unconfined"}
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW"}))
    assert parsers.parse_security_opts([f"seccomp={profile}"]) == {"seccomp": profile.read_text()}
    for bad, words in (("no-new-privileges=maybe", "no-new-privileges=false"), ("apparmor=x", "unsupported"),
                       (f"seccomp={tmp_path}/none.json", "no such file"), ("seccomp=", "unsupported")):
        with pytest.raises(SpecError, match=words):
            parsers.parse_security_opts([bad])
    profile.write_text("[1, 2]")
    with pytest.raises(SpecError, match="not a JSON object"):
        parsers.parse_security_opts([f"seccomp={profile}"])


def test_container_paths():
    assert parsers.parse_container_path("web:/etc/hosts") == ("web", "/etc/hosts")
    assert parsers.parse_container_path("/tmp/a:b") == (None, "/tmp/a:b")
    assert parsers.parse_container_path("./a:b") == (None, "./a:b")
    assert parsers.parse_container_path("file") == (None, "file")
    with pytest.raises(SpecError, match="NAME:PATH"):
        parsers.parse_container_path("web:")


def test_run_spec_entrypoint_and_new_flags():
    p = parsers.Parser(prog="t")
    parsers.add_run_options(p)
    args = p.parse_args(["--entrypoint", "echo", "--rm", "--init", "--label", "k=v", "--cap-add", "NET_ADMIN",
                         "--cap-drop", "MKNOD", "--privileged", "--security-opt", "no-new-privileges=false"])
    spec = parsers.run_spec(args, "busybox", ["hello", "world"])
    # the entrypoint travels apart; where the spec meets the image it is folded in (image_config.apply)
    from containerlab_magic.runtime.image_config import apply
    from containerlab_magic.runtime.images import Image
    assert (spec.entrypoint, spec.command) == (("echo",), ("hello", "world"))
    assert apply(spec, Image("busybox", ("/",))).command == ("echo", "hello", "world")
    assert (spec.auto_remove, spec.init, spec.labels, spec.cap_add, spec.cap_drop, spec.privileged,
            spec.no_new_privileges) == (True, True, (("k", "v"),), ("NET_ADMIN",), ("MKNOD",), True, False)
    assert apply(parsers.run_spec(args, "busybox", []), Image("busybox", ("/",))).command == ("echo",)
    p = parsers.Parser(prog="t")
    parsers.add_run_options(p, tty=False)
    assert not hasattr(p.parse_args([]), "tty")


# ---------------------------------------------------------------- ranges (spec validation)


@pytest.mark.parametrize("options,words", [
    ({"pids_limit": "4194305"}, "give from 1 to 4194304"),
    ({"memory": "99999999T"}, "invalid --memory 99999999T: too large; give at most 1024T"),
    ({"memory": "64M", "memory_swap": "99999999T"}, "at most 1024T"),
    ({"storage_size": "2048T"}, "at most 1024T"),
    ({"cpus": str(os.cpu_count() + 1)}, f"give from 0.01 to {os.cpu_count()}"),
    ({"cpus": "nan"}, "give from 0.01"),
    ({"cpus": "inf"}, "give from 0.01"),
])
def test_limits_out_of_range_say_the_range(options, words):
    with pytest.raises(SpecError, match=words.replace(".", r"\.")):
        Limits.parse(**options)


def test_limits_at_their_bounds_are_accepted():
    assert Limits.parse(pids_limit="4194304", memory="1024T", cpus=str(os.cpu_count())).pids_limit == 4194304


@pytest.mark.parametrize("timeout", [1e10, 1e12, 1e308, float("inf"), float("nan"), 0, -1, 30 * 86400 + 1])
def test_timeouts_beyond_30_days_or_not_finite_are_refused(timeout):
    with pytest.raises(SpecError, match="30 days"):
        ContainerSpec(["true"], timeout=timeout)
    assert ContainerSpec(["true"], timeout=30 * 86400).timeout == 30 * 86400


# ---------------------------------------------------------------- formats


def test_formats():
    assert [formats.human_age(s) for s in (5, 130, 7200, 90000)] == ["5s", "2m", "2h", "1d"]
    now = 1000.0
    row = {"status": "exited", "exit_code": 0, "finished": 990.0, "oom_killed": True}
    assert formats.describe_status(row, now) == "exited (0) 10s ago; 1 process killed for memory"
    row = {"status": "exited", "exit_code": 137, "finished": 999.0, "timed_out": True, "oom_kills": 2}
    assert formats.describe_status(row, now) == "exited (137) 1s ago; timed out; 2 processes killed for memory"
    assert formats.describe_status({"status": "running", "paused": True}, now) == "running (paused)"
    assert formats.bitrate(4e6) == "4 Mbit/s" and formats.bitrate(1.5e6) == "1.5 Mbit/s"
    assert formats.link_shape({"rate_bps": 4_000_000, "delay_us": 100_000, "loss_pct": 1}) == \
        "4 Mbit/s, +100 ms, 1% loss"
    assert formats.cpu_time(3725.9) == "01:02:05"
    assert formats.percent(None) == "--" and formats.percent(12.345) == "12.3%"
    table = formats.Rows(("A", "LONGER"), [("xyz", "1")])
    assert formats.text_table(table) == "A    LONGER\nxyz  1"
    assert formats.port_lines([PortMap(8080, 80)]) == ["80/tcp -> 127.0.0.1:8080"]


# ---------------------------------------------------------------- the in-root walker (no container needed)


def test_root_resolves_symlinks_inside_and_refuses_escapes(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("inside\n")
    (root / "abs").symlink_to("/etc")  # absolute: the root's /etc, never the host's
    (root / "rel").symlink_to("etc")
    (root / "etc" / "up").symlink_to("../../..")  # climbs above the root
    (root / "loop").symlink_to("loop")
    with Root(str(root), "the test root") as r:
        for path in ("/abs", "rel", "/etc/../abs"):
            fd = r.directory(path)
            try:
                assert os.open("hostname", os.O_RDONLY, dir_fd=fd) >= 0
                assert os.stat("hostname", dir_fd=fd).st_ino == (root / "etc" / "hostname").stat().st_ino
            finally:
                os.close(fd)
        with pytest.raises(SpecError, match="leads out of the test root's root"):
            r.directory("/etc/up/x")
        with pytest.raises(SpecError, match="leads out"):
            r.parent("/../etc/passwd")
        with pytest.raises(OSError):
            r.directory("/loop")
        with pytest.raises(NotADirectoryError):
            r.directory("/etc/hostname")
        parent, name = r.parent("/abs/hostname")
        os.close(parent)
        assert name == "hostname"


# ---------------------------------------------------------------- the verbs, on a real engine

def detached(engine, name: str, script: str = "sleep 60", **kw):
    spec = ContainerSpec(["sh", "-c", script], image="busybox", name=name, detach=True, **kw)
    return commands.run(engine, spec)


def logged(engine, name: str, text: bytes, timeout: float = 10.0) -> bool:
    """Poll a detached container's log until it holds `text` (or the deadline passes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in b"".join(data for _, data in commands.logs(engine, name)):
            return True
        time.sleep(0.01)
    return False


@needs_root
def test_run_names_the_local_images_when_the_image_is_unknown(engine, no_leaks):
    with pytest.raises(NotFound) as err:
        commands.run(engine, ContainerSpec(["true"], image="no-such-image"))
    # (images other test modules pulled into the shared data root may be listed as well)
    line = str(err.value)
    assert line.startswith("unknown image 'no-such-image'; local images: host, ") and "\n" not in line
    assert "busybox" in line.split("local images: ", 1)[1].split(", ")


@needs_root
@pytest.mark.parametrize("sig", ["KILL", "SIGKILL", "9", "kill"])
def test_kill_by_any_spelling_ends_with_137(engine, no_leaks, sig):
    detached(engine, "killme")
    try:
        assert commands.kill(engine, "killme", sig) == signal.SIGKILL
        assert commands.wait(engine, "killme") == 137
    finally:
        commands.rm(engine, "killme", force=True)


@needs_root
def test_kill_with_a_bad_signal_leaves_the_container_running(engine, no_leaks):
    detached(engine, "stays", "trap 'echo got TERM; exit 7' TERM; echo ready; sleep 60 & wait")
    try:
        assert logged(engine, "stays", b"ready")  # the trap is set
        with pytest.raises(SpecError, match="unknown signal 999"):
            commands.kill(engine, "stays", "999")
        assert commands.ps(engine)[0].status == "running"
        assert commands.kill(engine, "stays", "term") == signal.SIGTERM
        assert commands.wait(engine, "stays") == 7  # its own handler ran
    finally:
        commands.rm(engine, "stays", force=True)


@needs_root
def test_ps_filters_by_label_name_and_status(engine, no_leaks):
    detached(engine, "lab-a", labels={"course": "net101", "team": "red"})
    detached(engine, "lab-b", labels={"course": "net102"})
    detached(engine, "other", script="exit 3", labels={"course": "net101"})
    try:
        assert commands.wait(engine, "other") == 3

        def names(*items, all=False):
            return sorted(r.name for r in commands.ps(engine, all=all, filters=parsers.parse_filters(items)))

        assert names("label=course=net101") == ["lab-a"]
        assert names("label=course=net101", all=True) == ["lab-a", "other"]
        assert names("label=course") == ["lab-a", "lab-b"]
        assert names("label=course", "label=team") == ["lab-a"]  # labels: all must hold
        assert names("name=lab") == ["lab-a", "lab-b"]
        assert names("name=lab", "label=course=net102") == ["lab-b"]  # keys: ANDed
        assert names("name=lab-a", "name=lab-b") == ["lab-a", "lab-b"]  # one key twice: either
        assert names("status=exited") == ["other"]  # a status filter looks at every container
        assert names("status=running", "label=course=net101") == ["lab-a"]
        row = next(r for r in commands.ps(engine, all=True) if r.name == "other")
        assert (row.exit_code, row.labels, row.image) == (3, {"course": "net101"}, "busybox")
    finally:
        for name in ("lab-a", "lab-b", "other"):
            commands.rm(engine, name, force=True)


@needs_root
def test_inspect_is_docker_shaped(engine, no_leaks, tmp_path):
    spec = ContainerSpec(["sleep", "60"], image="busybox", name="inspected", detach=True, hostname="box",
                         env={"GREETING": "hi"}, labels={"k": "v"}, workdir="/tmp", user="1000:1000",
                         limits=Limits.parse(memory="64M", cpus="0.5", pids_limit="20"),
                         mounts=(), init=False, auto_remove=True, cap_drop=("MKNOD",))
    box = commands.run(engine, spec)
    try:
        doc = commands.inspect(engine, "inspected")
        json.dumps(doc)
        assert doc["Id"] == box.id and doc["Name"] == "inspected"
        assert doc["State"]["Status"] == "running" and doc["State"]["Running"] and doc["State"]["Pid"] == box.pid
        assert doc["Config"]["Image"] == "busybox" and doc["Config"]["Cmd"] == ["sleep", "60"]
        assert "GREETING=hi" in doc["Config"]["Env"] and doc["Config"]["Labels"] == {"k": "v"}
        assert (doc["Config"]["Hostname"], doc["Config"]["WorkingDir"], doc["Config"]["User"]) == \
            ("box", "/tmp", "1000:1000")
        host = doc["HostConfig"]
        assert (host["Memory"], host["NanoCpus"], host["PidsLimit"], host["NetworkMode"]) == \
            (64 << 20, 500_000_000, 20, "none")
        assert host["AutoRemove"] and host["CapDrop"] == ["MKNOD"] and not host["Privileged"]
        commands.update(engine, "inspected", Limits.parse(memory="128M"))
        assert commands.inspect(engine, "inspected")["HostConfig"]["Memory"] == 128 << 20  # live limits
        commands.pause(engine, "inspected")
        assert commands.inspect(engine, "inspected")["State"]["Status"] == "paused"
        commands.unpause(engine, "inspected")
        commands.kill(engine, "inspected")
        try:  # --rm: the runtime removes it as it ends, so it may be gone before wait looks
            assert commands.wait(engine, "inspected") in (137, None)
        except NotFound:
            pass
        assert wait_for(lambda: "inspected" not in [r.name for r in commands.ps(engine, all=True)], 10)
    finally:
        try:
            commands.rm(engine, "inspected", force=True)
        except NotFound:
            pass  # --rm: once the runtime honours auto_remove, it is gone already


@needs_root
def test_top_lists_the_containers_processes(engine, no_leaks):
    box = detached(engine, "busy", "sleep 61 & sleep 62 & echo ready; wait")
    try:
        assert logged(engine, "busy", b"ready")  # both sleeps are forked; poll until both exec'd
        deadline = time.monotonic() + 10
        while True:
            procs = commands.top(engine, "busy")
            commands_seen = [p.command for p in procs]
            if {"sleep 61", "sleep 62"} <= set(commands_seen) or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert procs[0].pid == box.pid and commands_seen[0].startswith("sh -c")
        assert "sleep 61" in commands_seen and "sleep 62" in commands_seen and len(procs) == 3
        assert {p.user for p in procs} == {"root"}
        assert os.getpid() not in {p.pid for p in procs}
        extra = commands.exec_(engine, "busy", ["sleep", "63"])  # an exec'd process is the container's too
        try:
            deadline = time.monotonic() + 10
            while "sleep 63" not in [p.command for p in commands.top(engine, "busy")]:
                assert time.monotonic() < deadline, commands.top(engine, "busy")
                time.sleep(0.01)
        finally:
            extra.kill()
            extra.wait()
    finally:
        commands.rm(engine, "busy", force=True)
    with pytest.raises(NotFound):
        commands.top(engine, "busy")


@needs_root
def test_cp_both_ways_inside_the_root_only(engine, no_leaks, tmp_path):
    script = ("mkdir -p /tmp/data/sub && echo one > /tmp/data/a && echo two > /tmp/data/sub/b && "
              "mkfifo /tmp/data/fifo && "
              "ln -s /etc /tmp/etc-link && ln -s ../../../../../.. /tmp/up && echo ready; sleep 60")
    detached(engine, "files", script, hostname="in-the-box")
    try:
        assert logged(engine, "files", b"ready")
        # out of the container: a file, a directory, through an absolute symlink (the container's /etc)
        commands.cp(engine, "files:/tmp/data/a", str(tmp_path / "a"))
        assert (tmp_path / "a").read_text() == "one\n"
        result = commands.cp(engine, "files:/tmp/data", str(tmp_path))
        assert (tmp_path / "data" / "sub" / "b").read_text() == "two\n" and result.files == 2
        assert result.skipped == 1 and not (tmp_path / "data" / "fifo").exists()  # the FIFO: skipped, no hang
        commands.cp(engine, "files:/tmp/etc-link/hostname", str(tmp_path / "hostname"))
        assert (tmp_path / "hostname").read_text() == "in-the-box\n"
        # into the container, through its symlink to /etc: the container's /etc, not the host's
        src = tmp_path / "planted"
        src.write_text("planted\n")
        os.chmod(src, 0o4755)
        commands.cp(engine, str(src), "files:/tmp/etc-link/")
        assert not os.path.exists("/etc/planted")
        inside = commands.exec_(engine, "files", ["sh", "-c", "cat /etc/planted; stat -c %a /etc/planted"]).wait()
        assert inside.stdout == b"planted\n755\n"  # set-uid dropped
        # escapes are refused, and nothing was written
        for source, target in (("files:/../../etc/passwd", str(tmp_path / "x")),
                               ("files:/tmp/up/etc/passwd", str(tmp_path / "x")),
                               (str(src), "files:/tmp/up/planted")):
            with pytest.raises(SpecError, match="leads out of container files's root"):
                commands.cp(engine, source, target)
        assert not (tmp_path / "x").exists()
        with pytest.raises(NotFound, match="no such file"):
            commands.cp(engine, "files:/nope", str(tmp_path / "y"))
        with pytest.raises(SpecError, match="between the host and a container"):
            commands.cp(engine, str(src), str(tmp_path / "z"))
    finally:
        commands.rm(engine, "files", force=True)
    with pytest.raises(NotFound, match="no such container"):
        commands.cp(engine, str(tmp_path / "a"), "files:/tmp/")


@needs_root
def test_stats_measure_cpu_over_a_window(engine, no_leaks):
    detached(engine, "spin", "while :; do :; done", limits=Limits.parse(cpus="0.5", memory="64M"))
    try:
        rows = next(commands.stats(engine, ["spin"], interval=0.5))
        assert [r.name for r in rows] == ["spin"]
        # spinning, and never above its 0.5 CPU (a busy host may give it less: no lower bound)
        assert 0 < rows[0].cpu_percent <= 60, rows[0].cpu_percent
        assert rows[0].usage["memory_limit"] == 64 << 20
        table = formats.stats_table(rows)
        assert table.rows[0][2].endswith("/ 64 MiB")
    finally:
        commands.rm(engine, "spin", force=True)
    with pytest.raises(NotFound):
        next(commands.stats(engine, ["spin"]))


@needs_root
def test_exec_needs_a_command_and_a_running_container(engine, no_leaks):
    with pytest.raises(SpecError, match="no command given"):
        commands.exec_(engine, "anything", ["--"])
    with pytest.raises(NotFound):
        commands.exec_(engine, "no-such-container", ["true"])
    detached(engine, "short", "exit 0")
    try:
        assert commands.wait(engine, "short") == 0
        with pytest.raises(Conflict):
            commands.top(engine, "short")
        with pytest.raises(Conflict, match="cp needs a running container"):
            commands.cp(engine, "short:/etc/hostname", "/tmp/never-written")
    finally:
        commands.rm(engine, "short", force=True)


@needs_root
def test_port_lists_published_ports(engine, no_leaks):
    spec = ContainerSpec(["sleep", "60"], image="busybox", name="web", detach=True, network="bridge",
                         ports=(PortMap.parse("127.0.0.1:18787:80"), PortMap.parse("18788:53/udp")))
    commands.run(engine, spec)
    try:
        assert formats.port_lines(commands.port(engine, "web")) == ["80/tcp -> 127.0.0.1:18787",
                                                                    "53/udp -> 127.0.0.1:18788"]
        doc = commands.inspect(engine, "web")
        assert doc["NetworkSettings"]["Ports"]["80/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": "18787"}]
        assert doc["NetworkSettings"]["IPAddress"] and "bridge" in doc["NetworkSettings"]["Networks"]
    finally:
        commands.rm(engine, "web", force=True)


def test_commands_never_render():
    """The layer returns data: no module of it prints or imports a face."""
    here = os.path.dirname(commands.__file__)
    for name in os.listdir(here):
        if name.endswith(".py"):
            text = open(os.path.join(here, name)).read()
            assert "print(" not in text and "IPython" not in text and "from ..cli" not in text, name
