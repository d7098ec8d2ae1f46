"""build: Containerfiles into images, FROM a pulled base (the registry fixtures) and FROM the
built-in busybox; RUN in real containers; the layer cache (a second build is all hits);
multi-stage COPY --from; .containerignore; ADD of a tar; one-line errors naming the line.
"""

from __future__ import annotations

import io
import tarfile

import pytest

from conftest import DATA, needs_root
from containerlab_magic.runtime.images import ImageStore
from images.fixtures import pushed, registry_processes  # noqa: F401
from test_cli import cli, one_line

pytestmark = needs_root

CONTAINERFILE = """\
# a comment
ARG BASE
FROM ${BASE} AS builder
ARG MSG=hello
RUN echo "$MSG from RUN" > /greeting && \\
    echo building
COPY app/ /src/
RUN cat /src/main.txt >> /greeting

FROM busybox
LABEL course=net101
ENV WHO=world PLACE=lab
WORKDIR /srv
COPY --from=builder /greeting ./greeting
ADD files.tar /opt/
EXPOSE 8080/tcp
STOPSIGNAL SIGINT
CMD ["sh", "-c", "cat greeting; echo $WHO in $PLACE; pwd; cat /opt/inside.txt"]
"""


@pytest.fixture(scope="module")
def store(pushed):
    store = ImageStore(DATA)
    before = set(store.oci.refs())
    yield store
    for name in set(store.oci.refs()) - before:
        store.oci.set_ref(name, None)
    cli("gc")
    store.oci.prune()


@pytest.fixture
def context(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.txt").write_text("main\n")
    (tmp_path / "app" / "secret.key").write_text("never copied\n")
    (tmp_path / ".containerignore").write_text("# keys stay out\napp/*.key\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("inside.txt")
        data = b"from the tar\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (tmp_path / "files.tar").write_bytes(buf.getvalue())
    (tmp_path / "Containerfile").write_text(CONTAINERFILE)
    return tmp_path


def test_build_twice_is_all_cache_hits_and_runs(store, pushed, context, no_leaks):
    base = pushed.ref("busybox:1.35")
    assert cli("pull", "-q", base).returncode == 0
    r = cli("build", "-t", "localhost/built:1", "--build-arg", f"BASE={base}", str(context), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "building\n" in r.stdout  # RUN's output streamed
    assert "Using cache" not in r.stdout
    first = store.oci.refs()["localhost/built:1"]
    r = cli("build", "-t", "localhost/built:1", "--build-arg", f"BASE={base}", str(context), timeout=300)
    assert r.returncode == 0, r.stderr
    steps = sum(1 for line in r.stdout.splitlines() if line.startswith("Step ") and " : ARG " not in line
                and " : FROM " not in line)
    assert r.stdout.count(" ---> Using cache") == steps and "\nbuilding\n" not in r.stdout  # nothing ran
    assert store.oci.refs()["localhost/built:1"] == first  # the same image, not a rebuild
    r = cli("run", "localhost/built:1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["hello from RUN", "main", "world in lab", "/srv", "from the tar"]
    doc = __import__("json").loads(cli("image", "inspect", "localhost/built:1").stdout)[0]
    assert doc["Config"]["Labels"] == {"course": "net101"}
    assert doc["Config"]["ExposedPorts"] == {"8080/tcp": {}} and doc["Config"]["StopSignal"] == "SIGINT"
    history = cli("history", "localhost/built:1").stdout
    assert "COPY --from=builder /greeting ./greeting" in history


def test_a_changed_source_misses_the_cache_from_there(store, pushed, context, no_leaks):
    base = pushed.ref("busybox:1.35")
    assert cli("pull", "-q", base).returncode == 0
    args = ("build", "-t", "localhost/built:2", "--build-arg", f"BASE={base}", str(context))
    assert cli(*args, timeout=300).returncode == 0
    (context / "app" / "main.txt").write_text("changed\n")
    r = cli(*args, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    copy = next(i for i, line in enumerate(lines) if line.startswith("Step") and "COPY app/" in line)
    assert lines[copy + 1] != " ---> Using cache"
    assert cli("run", "localhost/built:2", "cat", "/srv/greeting").stdout == "hello from RUN\nchanged\n"


def test_the_ignore_file_keeps_files_out(store, context, no_leaks):
    (context / "Containerfile").write_text("FROM busybox\nCOPY app /app\nCMD [\"ls\", \"/app\"]\n")
    r = cli("build", "-t", "localhost/ignored:1", str(context), timeout=300)
    assert r.returncode == 0, r.stderr
    assert cli("run", "localhost/ignored:1").stdout.split() == ["main.txt"]


def test_a_failing_run_stops_the_build_naming_the_line(store, context, no_leaks):
    (context / "Containerfile").write_text("FROM busybox\n\nRUN echo about to fail; exit 3\nCMD true\n")
    r = cli("build", "-t", "localhost/failing:1", str(context), timeout=300)
    assert r.returncode == 125
    assert r.stderr.strip().splitlines()[-1] == ("containerlab-magic: Containerfile line 3: RUN echo about to fail; "
                                                 "exit 3: exited with code 3")
    assert "localhost/failing:1" not in store.oci.refs()


@pytest.mark.parametrize("text, error", [
    ("RUN true\n", "Containerfile line 1: the first instruction must be FROM IMAGE"),
    ("FROM busybox\nFROB x\n", "Containerfile line 2: unknown instruction 'FROB'"),
    ("FROM busybox\nCOPY nothing-here /x\n", "Containerfile line 2: COPY: no file nothing-here"),
    ("FROM busybox\nCMD [\"unclosed\"\n", "Containerfile line 2: CMD: the exec form is a JSON array"),
    ("FROM host\n", "Containerfile line 1: FROM: the host image binds host directories"),
    ("FROM busybox\nEXPOSE 99999\n", "Containerfile line 2: EXPOSE: invalid port '99999'"),
    ("FROM busybox\nCOPY --from=nowhere /x /y\n", "Containerfile line 2: COPY: --from=nowhere: no earlier stage"),
])
def test_bad_containerfiles_are_one_line(store, tmp_path, text, error, no_leaks):
    (tmp_path / "Containerfile").write_text(text)
    r = cli("build", "-t", "localhost/bad:1", str(tmp_path))
    assert r.returncode == 125, r.stdout + r.stderr
    assert one_line(r.stderr).startswith("containerlab-magic: " + error), r.stderr


# ---------------------------------------------------------------- the grammar, without containers


def test_the_grammar_joins_lines_and_applies_docker_rules():
    from containerlab_magic.runtime.images import containerfile as g

    ins = g.parse("FROM a\n# note\nRUN one \\\n  # inside\n  two\nENV K=v\n")
    assert [(i.line, i.keyword, i.args) for i in ins] == [(1, "FROM", "a"), (3, "RUN", "one  two"),
                                                           (6, "ENV", "K=v")]
    config = {"Cmd": ["base"]}
    g.apply_config(config, g.parse('FROM a\nENTRYPOINT ["x"]')[1])
    assert config == {"Entrypoint": ["x"]}  # a base image's Cmd goes with a new Entrypoint
    config = {}
    for i in g.parse('FROM a\nCMD ["c"]\nENTRYPOINT ["x"]\nWORKDIR /a\nWORKDIR b\nENV A=1 B=${A}2')[1:]:
        g.apply_config(config, i, {}, own_cmd="Cmd" in config)
    assert config == {"Cmd": ["c"], "Entrypoint": ["x"], "WorkingDir": "/a/b", "Env": ["A=1", "B=12"]}
    assert g.command_form(g.parse("FROM a\nRUN echo hi")[1]) == ["/bin/sh", "-c", "echo hi"]


def test_the_ignore_file_rule_last_match_wins(tmp_path):
    from containerlab_magic.runtime.images.build_context import ignore_patterns as _ignore_patterns, walk as _walk

    (tmp_path / "logs").mkdir()
    for name in ("a.log", "keep.log", "b.txt", "logs/x"):
        (tmp_path / name).write_text("x")
    (tmp_path / ".dockerignore").write_text("*.log\n!keep.log\nlogs\n")
    assert sorted(_walk(str(tmp_path), _ignore_patterns(str(tmp_path)))) == [".dockerignore", "b.txt", "keep.log"]


def test_a_build_killed_mid_run_leaves_nothing_once_gc_ran(store, tmp_path, no_leaks):
    """kill -9 of `build` while a RUN runs: its RUN container ends with it (the daemon's
    caller went), and gc forgets the temporary names only a live build may hold, so
    `image prune` frees what it had made; no half layer stays in the store's tmp."""
    import os
    import subprocess
    import sys
    import time

    (tmp_path / "Containerfile").write_text("FROM busybox\nRUN echo started; sleep 30\n")
    temps = lambda: [n for n in store.oci.refs() if "clab-build-tmp" in n]  # noqa: E731
    assert temps() == []
    proc = subprocess.Popen([sys.executable, "-m", "containerlab_magic", "build", "-t", "killed-build:1",
                             str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            if line.strip() == "started":  # the RUN's own output (not the Step line): it runs now
                break
        assert temps(), "the build named no temporary image"
    finally:
        proc.kill()
        proc.wait()
    left = temps()
    assert left  # the kill left them behind
    r = cli("gc")
    assert r.returncode == 0 and all(f"temporary image {name}" in r.stdout for name in left), r.stdout
    assert temps() == [] and not [n for n in store.oci.refs() if "killed-build" in n]
    deadline = time.monotonic() + 10
    while os.listdir(store.oci.blobs.tmp) and time.monotonic() < deadline:
        time.sleep(0.05)  # (the daemon's RUN container is ended by its shim when the caller went)
    store.oci.prune()
    assert os.listdir(store.oci.blobs.tmp) == []
