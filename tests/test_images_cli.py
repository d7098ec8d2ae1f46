"""The image verbs from a shell: pull with progress, images, history, tag, rmi, save/load,
import/export, commit, push, login; one-line errors with status 125.

Against the real registry fixtures (tests/images/): Debian's docker-registry on
127.0.0.1 with the images skopeo pushed.  Names this module makes are removed
and the store pruned at the end.
"""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from conftest import DATA, ipython_shell, needs_root
from containerlab_magic.cli_images import LayerProgress
from containerlab_magic.runtime.images import ImageStore
from images.fixtures import basic_registry, pushed, registry_processes  # noqa: F401
from images.registry import PASSWORD, USER
from test_cli import cli, one_line

pytestmark = needs_root


@pytest.fixture(scope="module")
def store(pushed):
    store = ImageStore(DATA)
    before = set(store.oci.refs())
    yield store
    for name in set(store.oci.refs()) - before:
        store.oci.set_ref(name, None)
    cli("gc")
    store.oci.prune()


def test_pull_shows_a_line_per_layer_and_lists_it(store, pushed, no_leaks):
    ref = pushed.ref("layered:3")
    r = cli("pull", ref)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("layered:3")
    digests = store.oci.record(store.oci.refs()[r.stdout.strip()]).manifest.layers
    for desc in digests:  # plain lines off a terminal: each layer reaches done (or exists)
        assert any(line.startswith(desc.digest[7:19] + ": ") and line.split(": ")[1] in ("done", "exists")
                   for line in r.stderr.splitlines()), r.stderr
    assert "\033[" not in r.stderr
    r = cli("images")
    line = next(line for line in r.stdout.splitlines() if "/layered " in line)
    assert line.split()[1] == "3"
    assert r.stdout.splitlines()[1].split()[:2] == ["host", "builtin"]


def test_the_tty_renderer_rewrites_lines_in_place():
    out = io.StringIO()
    bar = LayerProgress(out, tty=True)
    bar("sha256:" + "a" * 64, 0, 100, "waiting")
    bar("sha256:" + "b" * 64, 0, 100, "waiting")
    bar("sha256:" + "a" * 64, 50, 100, "downloading")
    bar.finish()
    text = out.getvalue()
    assert "\033[F\033[F" in text and "[" + "=" * 15 + " " * 15 + "]" in text


def test_history_names_each_instruction_and_size(store, pushed, no_leaks):
    ref = pushed.ref("layered:3")
    assert cli("pull", "-q", ref).returncode == 0
    r = cli("history", ref)
    assert r.returncode == 0, r.stderr
    rows = r.stdout.splitlines()[1:]
    assert len(rows) >= 3 and rows[0].split()[0] != "<missing>"


def test_tag_inspect_rmi(store, pushed, no_leaks):
    ref = pushed.ref("zstd:1")
    assert cli("pull", "-q", ref).returncode == 0
    assert cli("tag", ref, "localhost/mine:v1").returncode == 0
    doc = json.loads(cli("image", "inspect", "localhost/mine:v1").stdout)[0]
    assert doc["ManifestDigest"] == store.oci.refs()[ref.replace(":1", ":1")]
    r = cli("rmi", "localhost/mine:v1")
    assert r.returncode == 0 and "Untagged: localhost/mine:v1" in r.stdout
    r = cli("rmi", "localhost/mine:v1")
    assert r.returncode == 125 and one_line(r.stderr).startswith("containerlab-magic: no image")


def test_one_line_errors(store, no_leaks):
    for args, start in ((("pull", "127.0.0.1:1/nothing:1"), "containerlab-magic: "),
                        (("rmi", "busybox"), "containerlab-magic: rmi busybox: busybox is a built-in image"),
                        (("history", "no-such-image:9"), "containerlab-magic: no image"),
                        (("load", "-i", "/nonexistent.tar"), "containerlab-magic: no archive at"),
                        (("commit", "no-such-container", "localhost/x:1"), "containerlab-magic: "),
                        (("login", "-u", "x", "127.0.0.1:1"), "containerlab-magic: login: give the password")):
        r = cli(*args)
        assert r.returncode == 125, (args, r.stdout, r.stderr)
        assert one_line(r.stderr).startswith(start), (args, r.stderr)


def test_save_then_load_keeps_the_image(store, pushed, tmp_path, no_leaks):
    """An OCI layout keeps the manifest (same digest); a docker-archive keeps the config (same id)."""
    ref = pushed.ref("busybox:1.35")
    assert cli("pull", "-q", ref).returncode == 0
    digest = store.oci.refs()[ref]
    image_id = store.oci.record(digest).config_digest
    for fmt in ("oci", "docker-archive"):
        path = str(tmp_path / f"bb-{fmt}.tar")
        assert cli("save", "--format", fmt, "-o", path, ref).returncode == 0
        assert cli("rmi", ref).returncode == 0
        assert ref not in store.oci.refs()
        r = cli("load", "-i", path)
        assert r.returncode == 0, r.stderr
        assert f"Loaded image: {ref}" in r.stdout
        if fmt == "oci":
            assert store.oci.refs()[ref] == digest
        assert store.oci.record(store.oci.refs()[ref]).config_digest == image_id


def test_commit_push_rmi_pull_round_trip(store, pushed, tmp_path, no_leaks):
    base = pushed.ref("busybox:1.35")
    assert cli("pull", "-q", base).returncode == 0
    r = cli("run", "-d", "--name", "committee", base, "sh", "-c", "echo made > /made; rm /bin/true; sleep 60")
    assert r.returncode == 0, r.stderr
    try:
        from test_cli import until
        assert until(lambda: cli("exec", "committee", "cat", "/made").stdout == "made\n")
        new = pushed.ref("committed:1")
        r = cli("commit", "-c", "CMD [\"cat\", \"/made\"]", "-c", "ENV MADE=yes", "committee", new)
        assert r.returncode == 0, r.stderr
        digest = r.stdout.strip()
        out = str(tmp_path / "fs.tar")
        assert cli("export", "-o", out, "committee").returncode == 0
        with tarfile.open(out) as tar:
            names = set(tar.getnames())
        assert "made" in names and "bin/true" not in names and "bin/sh" in names
    finally:
        cli("rm", "-f", "committee")
    r = cli("push", new)
    assert r.returncode == 0, r.stderr
    assert cli("rmi", new).returncode == 0
    assert cli("pull", "-q", new).returncode == 0
    assert store.oci.refs()[new] == digest
    r = cli("run", new)  # the committed Cmd and Env
    assert (r.returncode, r.stdout) == (0, "made\n"), r.stderr
    r = cli("run", new, "sh", "-c", "echo $MADE; test -e /bin/true || echo gone")
    assert r.stdout.split() == ["yes", "gone"]


def test_import_a_tarball_with_changes(store, tmp_path, no_leaks):
    from images import build

    path = tmp_path / "root.tar"
    path.write_bytes(build.busybox_tar())
    r = cli("import", "-c", "WORKDIR /srv", "-c", "CMD pwd", str(path), "localhost/imported:1")
    assert r.returncode == 0, r.stderr
    r = cli("run", "localhost/imported:1")
    assert (r.returncode, r.stdout) == (0, "/srv\n"), r.stderr


def test_login_with_password_stdin(basic_registry, tmp_path, no_leaks):
    env = dict(os.environ, CONTAINERLAB_AUTH_FILE=str(tmp_path / "auth.json"))
    r = cli("login", "-u", USER, "--password-stdin", basic_registry.host, input="wrong\n", env=env)
    assert r.returncode == 125 and "401" in one_line(r.stderr) or "credential" in r.stderr
    r = cli("login", "-u", USER, "--password-stdin", basic_registry.host, input=PASSWORD + "\n", env=env)
    assert r.returncode == 0, r.stderr
    assert oct(os.stat(tmp_path / "auth.json").st_mode & 0o777) == "0o600"
    assert cli("logout", basic_registry.host, env=env).returncode == 0
    assert basic_registry.host not in (tmp_path / "auth.json").read_text()


# ---------------------------------------------------------------- run honours the image config


@pytest.fixture(scope="module")
def configured(store, tmp_path_factory):
    """A busybox image whose config sets every field run honours."""
    from images import build

    path = tmp_path_factory.mktemp("cfg") / "root.tar"
    path.write_bytes(build.busybox_tar())
    changes = ('ENTRYPOINT ["echo", "entry"]', 'CMD ["from-cmd"]', "ENV A=image B=image", "WORKDIR /srv",
               "USER nobody", "EXPOSE 8080/tcp", "STOPSIGNAL SIGUSR1")
    r = cli("import", *[a for c in changes for a in ("-c", c)], str(path), "localhost/configured:1")
    assert r.returncode == 0, r.stderr
    return "localhost/configured:1"


def test_run_uses_entrypoint_and_cmd_as_docker(configured, no_leaks):
    assert cli("run", configured).stdout == "entry from-cmd\n"  # Entrypoint + Cmd
    assert cli("run", configured, "given").stdout == "entry given\n"  # a command replaces Cmd
    r = cli("run", "--entrypoint", "sh", configured, "-c", "echo $A $B; pwd; id -u")  # Cmd dropped
    assert r.stdout.split() == ["image", "image", "/srv", "65534"], r.stderr
    r = cli("run", "--entrypoint", "sh", "-e", "A=mine", "-w", "/tmp", "-u", "0", configured, "-c",
            "echo $A $B; pwd; id -u")
    assert r.stdout.split() == ["mine", "image", "/tmp", "0"], r.stderr  # the flags win


def test_exposed_ports_and_the_stop_signal(configured, no_leaks):
    script = "trap 'echo got usr1; exit 7' USR1; echo ready; while :; do sleep 0.1; done"
    r = cli("run", "-d", "--name", "cfg-stop", "--entrypoint", "sh", configured, "-c", script)
    assert r.returncode == 0, r.stderr
    try:
        from test_cli import until
        assert until(lambda: "ready" in cli("logs", "cfg-stop").stdout)
        assert cli("port", "cfg-stop").stdout.startswith("8080/tcp (exposed by the image, not published")
        assert cli("stop", "cfg-stop").returncode == 0
        assert "got usr1" in cli("logs", "cfg-stop").stdout  # SIGUSR1, not SIGTERM, came first
        assert json.loads(cli("inspect", "cfg-stop").stdout)[0]["State"]["ExitCode"] == 7
    finally:
        cli("rm", "-f", "cfg-stop")


def test_run_pulls_a_missing_image_with_progress(store, pushed, no_leaks):
    ref = pushed.ref("zstd:1")
    if ref in store.oci.refs():
        assert cli("rmi", ref).returncode == 0
    r = cli("run", ref, "cat", "/data/zstd.txt")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "squeezed\n"
    assert r.stderr.splitlines()[0] == f"Unable to find image '{ref}' locally"
    assert ref in store.oci.refs()


def test_a_bare_unknown_name_is_never_looked_up(store, no_leaks):
    r = cli("run", "no-such-image-anywhere", "true")
    assert r.returncode == 125
    assert one_line(r.stderr).startswith("containerlab-magic: unknown image 'no-such-image-anywhere'")


# ---------------------------------------------------------------- the notebook face


def test_notebook_images_history_chart_and_build(store, pushed, tmp_path):
    shell = ipython_shell()
    shell.run_line_magic("load_ext", "containerlab_magic")
    try:
        ref = pushed.ref("layered:3")
        shell.run_line_magic("container", f"pull {pushed.ref('busybox:1.35')}")  # layered's base
        shell.run_line_magic("container", f"pull {ref}")
        chart = shell.run_line_magic("container", "images")
        svg = chart._repr_svg_()
        assert svg.startswith("<svg") and svg.count("<rect") >= 3
        assert 'stroke="black"' in svg  # layered:3 shares its busybox layer with another stored image
        chart = shell.run_line_magic("container", f"history {ref}")
        assert chart._repr_svg_().count("<rect") == 3
        (tmp_path / "hello.txt").write_text("hi from the context\n")
        shell.run_cell_magic("container", f"build -t localhost/nb:1 {tmp_path}",
                             "FROM busybox\nCOPY hello.txt /hello.txt\nCMD [\"cat\", \"/hello.txt\"]\n")
        assert "localhost/nb:1" in store.oci.refs()
        from IPython.core.error import UsageError
        with pytest.raises(UsageError, match=r"^the cell line 2: unknown instruction 'NOPE'"):
            shell.run_cell_magic("container", "build -t localhost/nb:2", "FROM busybox\nNOPE\n")
    finally:
        shell.run_line_magic("unload_ext", "containerlab_magic")
