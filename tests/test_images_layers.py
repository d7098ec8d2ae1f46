"""The layer unpacker against real and hand-made evil layers.

Each attack is a tarball made here by hand; each test checks both the refusal
(or the containment) and that nothing outside the layer's directory changed.
The overlay tests mount the unpacked layers in a private mount namespace
(unshare -m), so nothing is left mounted when they end.
"""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import shutil
import stat
import subprocess
import tempfile
import textwrap

import pytest

from conftest import needs_root, our_mounts
from containerlab_magic.runtime.images.layers import LayerError, LayerLimits, unpack
from images.tarballs import entry, gz, tar_bytes, zstd

pytestmark = needs_root


@pytest.fixture(autouse=True, scope="module")
def nothing_mounted():
    before = our_mounts()
    yield
    assert our_mounts() == before


@pytest.fixture
def dest(tmp_path):
    """(layer dir, a decoy dir beside it that no layer may touch)."""
    layer = tmp_path / "layer"
    layer.mkdir()
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "outside.txt").write_text("untouched\n")
    return layer, decoy


def run(layer, entries, **kw):
    return unpack(io.BytesIO(tar_bytes(entries)), str(layer), **kw)


def untouched(decoy) -> bool:
    return sorted(os.listdir(decoy)) == ["outside.txt"] and (decoy / "outside.txt").read_text() == "untouched\n" \
        and os.stat(decoy / "outside.txt").st_nlink == 1


def test_plain_layer_keeps_modes_owners_links_and_times(dest):
    layer, _ = dest
    entries = [entry("./", "dir"), entry("bin/", "dir"), entry("bin/busybox", data=b"\x7fELF", mode=0o755),
               entry("bin/sh", "symlink", link="/bin/busybox"), entry("tmp/", "dir", mode=0o1777),
               entry("usr/bin/passwd", data=b"pw", mode=0o4755), entry("home/u/", "dir", mode=0o700, uid=1000,
                                                                         gid=1000),
               entry("home/u/f", data=b"x", uid=1000, gid=1000), entry("bin/ash", "hardlink", link="bin/busybox")]
    raw = tar_bytes(entries)
    report = unpack(io.BytesIO(raw), str(layer))
    assert report.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert os.readlink(layer / "bin/sh") == "/bin/busybox"  # absolute symlinks are normal in images
    assert stat.S_IMODE(os.stat(layer / "tmp").st_mode) == 0o1777
    assert stat.S_IMODE(os.stat(layer / "usr/bin/passwd").st_mode) == 0o4755  # root keeps setuid
    assert stat.S_IMODE(os.stat(layer / "usr").st_mode) == 0o755  # an implicit parent
    st = os.stat(layer / "home/u/f")
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert os.stat(layer / "home/u").st_mtime == 1_700_000_000
    assert os.stat(layer / "bin/ash").st_ino == os.stat(layer / "bin/busybox").st_ino


@pytest.mark.parametrize("compress", [gz, zstd], ids=["gzip", "zstd"])
def test_compressed_layers_give_the_diff_id_of_the_tar(dest, compress):
    layer, _ = dest
    raw = tar_bytes([entry("a/b.txt", data=b"hello\n" * 1000)])
    report = unpack(io.BytesIO(compress(raw)), str(layer))
    assert report.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert (layer / "a/b.txt").read_bytes() == b"hello\n" * 1000


def test_absolute_paths_land_inside(dest):
    layer, decoy = dest
    run(layer, [entry(str(decoy / "abs.txt"), data=b"inside")])
    assert (layer / str(decoy).lstrip("/") / "abs.txt").read_bytes() == b"inside"
    assert untouched(decoy)


def test_dotdot_is_refused(dest):
    layer, decoy = dest
    with pytest.raises(LayerError, match="'..'"):
        run(layer, [entry("../decoy/escape.txt", data=b"out")])
    assert untouched(decoy)


def test_write_through_a_symlink_is_refused(dest):
    layer, decoy = dest
    for target in ("../decoy", str(decoy)):  # relative and absolute
        with pytest.raises(LayerError, match="through 'esc', which is a symlink"):
            run(layer, [entry("esc", "symlink", link=target), entry("esc/pwned", data=b"x")])
        assert untouched(decoy)
        os.unlink(layer / "esc")


def test_a_file_over_a_symlink_replaces_the_link(dest):
    layer, decoy = dest
    run(layer, [entry("link", "symlink", link=str(decoy / "outside.txt")), entry("link", data=b"mine")])
    assert not os.path.islink(layer / "link") and (layer / "link").read_bytes() == b"mine"
    assert untouched(decoy)


@pytest.mark.parametrize("target", ["{decoy}/outside.txt", "../decoy/outside.txt", "missing"])
def test_hard_links_out_of_the_layer_are_refused(dest, target):
    layer, decoy = dest
    with pytest.raises(LayerError):
        run(layer, [entry("hard", "hardlink", link=target.format(decoy=decoy))])
    assert untouched(decoy)


def test_hard_link_through_a_symlink_is_refused(dest):
    layer, decoy = dest
    with pytest.raises(LayerError, match="symlink"):
        run(layer, [entry("d", "symlink", link=str(decoy)), entry("hard", "hardlink", link="d/outside.txt")])
    assert untouched(decoy)


def test_rewriting_a_hard_link_does_not_write_the_shared_inode(dest):
    layer, _ = dest
    run(layer, [entry("a", data=b"original"), entry("h", "hardlink", link="a"), entry("h", data=b"new")])
    assert (layer / "a").read_bytes() == b"original" and (layer / "h").read_bytes() == b"new"


def test_devices_are_skipped_fifos_made(dest):
    layer, _ = dest
    report = run(layer, [entry("dev/null", "char", dev=(1, 3)), entry("dev/sda", "block", dev=(8, 0)),
                         entry("run/pipe", "fifo")])
    assert not os.path.lexists(layer / "dev/null") and not os.path.lexists(layer / "dev/sda")
    assert report.skipped_devices == ["dev/null", "dev/sda"]
    assert stat.S_ISFIFO(os.lstat(layer / "run/pipe").st_mode)


def test_file_replaces_directory_and_the_reverse(dest):
    layer, _ = dest
    run(layer, [entry("x/", "dir"), entry("x/inner", data=b"1"), entry("x", data=b"now a file"),
                entry("y", data=b"a file"), entry("y/", "dir"), entry("y/z", data=b"2")])
    assert (layer / "x").read_bytes() == b"now a file"
    assert (layer / "y").is_dir() and (layer / "y/z").read_bytes() == b"2"


def test_writing_under_a_file_is_refused(dest):
    layer, _ = dest
    with pytest.raises(LayerError, match="not a directory"):
        run(layer, [entry("f", data=b"file"), entry("f/g", data=b"x")])


def test_whiteouts_become_overlay_whiteouts(dest):
    layer, _ = dest
    report = run(layer, [entry("data/.wh.old.txt", mode=0), entry("data/dir/.wh..wh..opq", mode=0),
                         entry("data/dir/", "dir"), entry("data/dir/z", data=b"z"),
                         entry("data/keep", data=b"x"), entry("data/keep/.wh.k", mode=0)])
    st = os.lstat(layer / "data/old.txt")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 0 and os.minor(st.st_rdev) == 0
    assert os.getxattr(layer / "data/dir", "trusted.overlay.opaque") == b"y"
    assert (layer / "data/keep").read_bytes() == b"x"  # a whiteout under a file hides nothing
    assert (report.whiteouts, report.opaque_dirs) == (1, 1)
    assert not any(name.startswith(".wh.") for _, _, files in os.walk(layer) for name in files)


def test_layer_xattrs_cannot_steer_overlay(dest):
    layer, _ = dest
    run(layer, [entry("d/", "dir", pax={"SCHILY.xattr.trusted.overlay.redirect": "/etc"}),
                entry("ping", data=b"p", pax={"SCHILY.xattr.security.capability": "\x01\x00\x00\x02"
                                                                                    "\x00\x20\x00\x00"
                                                                                    "\x00\x00\x00\x00"
                                                                                    "\x00\x00\x00\x00"
                                                                                    "\x00\x00\x00\x00"})])
    assert "trusted.overlay.redirect" not in os.listxattr(layer / "d")
    assert "security.capability" in os.listxattr(layer / "ping")


@pytest.mark.parametrize("limits,entries,match", [
    (LayerLimits(max_entries=10), [entry(f"f{i}", data=b"") for i in range(11)], "more than 10 entries"),
    (LayerLimits(max_total=1 << 20), [entry(f"f{i}", data=b"x" * (400 << 10)) for i in range(3)],
     "more than 1048576 bytes"),
    (LayerLimits(max_file=1000), [entry("big", data=b"x" * 1001)], "over the limit of 1000"),
    (LayerLimits(), [entry("d/" * 3000 + "f", data=b"")], "over 4096: refused"),
])
def test_tar_bombs_are_refused(dest, limits, entries, match):
    layer, _ = dest
    with pytest.raises(LayerError, match=match):
        run(layer, entries, limits=limits)


def test_a_missing_end_of_archive_footer_is_tolerated(dest):
    layer, _ = dest
    raw = tar_bytes([entry("a", data=b"1"), entry("b", data=b"22")], footer=False)
    assert len(raw) % 512 != 0
    report = unpack(io.BytesIO(raw), str(layer))
    assert (layer / "b").read_bytes() == b"22" and report.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()


def test_garbage_is_refused(dest):
    layer, _ = dest
    with pytest.raises(LayerError, match="not a valid tar"):
        unpack(io.BytesIO(b"\x1f\x8bnot really gzip" * 40), str(layer))


def test_without_root_setid_bits_are_stripped_and_opaque_is_a_user_xattr(dest):
    layer, _ = dest
    report = run(layer, [entry("su", data=b"su", mode=0o4755, uid=0), entry("d/.wh..wh..opq", mode=0),
                         entry("d/", "dir")], as_root=False)
    assert stat.S_IMODE(os.stat(layer / "su").st_mode) == 0o755
    assert report.stripped_setid == ["su"]
    assert os.getxattr(layer / "d", "user.overlay.opaque") == b"y"


def _mount_and_list(layers: list, extra: str = "") -> str:
    """Overlay the layers (top first) in a private mount namespace; `find` the merged view."""
    work = os.path.dirname(str(layers[0]))
    options = f"{extra}lowerdir={':'.join(map(str, layers))},upperdir={work}/u,workdir={work}/w"
    script = textwrap.dedent(f"""
        set -e
        mkdir -p {work}/u {work}/w {work}/m
        mount -t overlay overlay -o {options} {work}/m
        cd {work}/m && find . | sort
    """)
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, check=True).stdout


def test_overlay_of_unpacked_layers_honours_whiteouts(tmp_path):
    l1, l2 = tmp_path / "l1", tmp_path / "l2"
    l1.mkdir(), l2.mkdir()
    run(l1, [entry("data/old.txt", data=b"o"), entry("data/dir/a", data=b"a"), entry("data/dir/b", data=b"b"),
             entry("data/keep/k", data=b"k")])
    run(l2, [entry("data/.wh.old.txt", mode=0), entry("data/dir/.wh..wh..opq", mode=0),
             entry("data/dir/z", data=b"z"), entry("data/.wh.keep", mode=0)])
    seen = _mount_and_list([l2, l1]).split()
    assert seen == [".", "./data", "./data/dir", "./data/dir/z"]


@pytest.fixture
def shared_tmp():
    """A scratch dir an unprivileged user can reach (pytest's tmp_path is under a 0700 dir)."""
    path = tempfile.mkdtemp(prefix="clab-userns-")
    os.chmod(path, 0o777)
    yield pathlib.Path(path)
    shutil.rmtree(path)


def test_a_user_namespace_unpacks_and_mounts_with_userxattr(shared_tmp):
    """As uid 65534 mapped to root in a new user namespace: whiteouts, user.* opaque, userxattr mount."""
    if subprocess.run(["unshare", "-Ur", "true"], capture_output=True).returncode != 0:
        pytest.skip("this host forbids unprivileged user namespaces")
    tmp_path = shared_tmp
    layers = {"l1": tar_bytes([entry("d/a", data=b"a"), entry("d/b", data=b"b"), entry("gone", data=b"g")]),
              "l2": tar_bytes([entry("d/.wh..wh..opq", mode=0), entry("d/", "dir"), entry("d/c", data=b"c"),
                               entry(".wh.gone", mode=0), entry("sbin/su", data=b"s", mode=0o4755)])}
    for name, raw in layers.items():
        (tmp_path / (name + ".tar")).write_bytes(raw)
    code = textwrap.dedent(f"""
        import os, subprocess
        from containerlab_magic.runtime.images.layers import unpack
        for name in ("l1", "l2"):
            os.mkdir("{tmp_path}/" + name)
            with open("{tmp_path}/" + name + ".tar", "rb") as f:
                assert unpack(f, "{tmp_path}/" + name).userxattr  # detected: root of a 1-id userns
        for d in "uwm":
            os.mkdir("{tmp_path}/" + d)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", "userxattr,lowerdir={tmp_path}/l2:{tmp_path}/l1,"
                        "upperdir={tmp_path}/u,workdir={tmp_path}/w", "{tmp_path}/m"], check=True)
        print(sorted(os.listdir("{tmp_path}/m")), sorted(os.listdir("{tmp_path}/m/d")),
              oct(os.stat("{tmp_path}/m/sbin/su").st_mode & 0o7777))
    """)
    env = {"PYTHONPATH": os.getcwd(), "PATH": os.environ["PATH"]}
    # Debian's python3: the unprivileged user cannot reach root's pyenv.
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "unshare", "-Urm",
                          "/usr/bin/python3", "-c", code], capture_output=True, text=True, env=env, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("] ")[0] + "]" == "['d', 'sbin']"
    assert "['c'] 0o755" in out.stdout
