"""commit: changes made through a real overlay (the kernel writes the whiteouts and the
opaque xattr into the upper dir) become a layer; the image round-trips through a registry.

pull -> change in an overlay -> commit -> push -> rmi -> pull gives the same digest,
and skopeo reads the pushed image back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from conftest import needs_root, our_mounts
from containerlab_magic.runtime.images import ImageStore, catalog
from containerlab_magic.runtime.images.commit import commit
from containerlab_magic.runtime.images.pull import pull
from containerlab_magic.runtime.images.push import push
from images.fixtures import pushed, registry_processes  # noqa: F401
from images.registry import no_proxy_env

pytestmark = needs_root


@pytest.fixture(scope="module", autouse=True)
def module_leaks():
    before_mounts, before_registries = our_mounts(), registry_processes()
    yield
    assert our_mounts() == before_mounts
    assert registry_processes() == before_registries


@pytest.fixture
def images(tmp_path):
    store = ImageStore(str(tmp_path / "data"))
    yield store
    assert os.listdir(store.oci.blobs.tmp) == []


def change_through_overlay(image, work: str, script: str) -> str:
    """Run `script` with busybox sh chrooted in an overlay of the image; return the upper dir."""
    upper, wdir, merged = (os.path.join(work, d) for d in ("upper", "work", "merged"))
    for d in (upper, wdir, merged):
        os.makedirs(d)
    shell = (f"set -e; mount -t overlay overlay -o lowerdir={':'.join(image.layers)},upperdir={upper},"
             f"workdir={wdir} {merged}; chroot {merged} /bin/sh -c '{script}'; umount {merged}")
    subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", shell], check=True,
                   capture_output=True)
    return upper


def merged_listing(image, work: str) -> list[str]:
    shell = (f"set -e; d=$(mktemp -d -p {work}); mkdir $d/u $d/w $d/m; "
             f"mount -t overlay overlay -o lowerdir={':'.join(image.layers)},upperdir=$d/u,workdir=$d/w $d/m; "
             f"cd $d/m/data && find . | sort; cd /; umount $d/m; rm -rf $d")
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", shell], check=True,
                          capture_output=True, text=True).stdout.split()


def test_commit_round_trips_through_a_registry(images, pushed, tmp_path):
    pull(images.oci, pushed.ref("layered:3"))
    base = images.resolve(pushed.ref("layered:3"))
    upper = change_through_overlay(base, str(tmp_path / "c1"),
                                   "rm /data/hard; rm -rf /data/dir; mkdir /data/dir; echo fresh > /data/dir/f; "
                                   "echo new > /data/new; ln /data/new /data/new2")
    ref, digest = commit(images.oci, upper, pushed.ref("committed:1"), parent=pushed.ref("layered:3"),
                         created_by="sh -c 'rm ...'", changes={"Cmd": ["/bin/cat", "/data/new"]})
    image = images.resolve(str(ref))
    assert len(image.layers) == 4 and image.config.cmd == ("/bin/cat", "/data/new")
    assert merged_listing(image, str(tmp_path)) == [".", "./dir", "./dir/f", "./new", "./new2", "./suid"]
    assert os.stat(os.path.join(image.layers[0], "data/new2")).st_ino == \
        os.stat(os.path.join(image.layers[0], "data/new")).st_ino
    assert catalog.history(images.oci, str(ref))[0]["created_by"] == "sh -c 'rm ...'"

    push(images.oci, str(ref))
    info = json.loads(subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"],
                                     check=True, capture_output=True, text=True, env=no_proxy_env()).stdout)
    assert info["Digest"] == digest and len(info["Layers"]) == 4
    catalog.rmi(images.oci, str(ref))
    catalog.rmi(images.oci, pushed.ref("layered:3"))
    assert os.listdir(images.oci.layers) == []
    _, again = pull(images.oci, str(ref))
    assert again == digest
    assert merged_listing(images.resolve(str(ref)), str(tmp_path)) == [".", "./dir", "./dir/f", "./new", "./new2",
                                                                      "./suid"]


def test_the_same_changes_give_the_same_layer(images, tmp_path):
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "motd").write_text("hello\n")
    os.symlink("/etc/motd", src / "motd")
    os.mknod(src / "gone", 0o600 | 0o020000, os.makedev(0, 0))  # an overlay whiteout
    _, first = commit(images.oci, str(src), "localhost/a:1")
    _, second = commit(images.oci, str(src), "localhost/b:1")
    layer = lambda d: json.loads(images.oci.blobs.read(d))["layers"][0]["digest"]  # noqa: E731
    assert layer(first) == layer(second)
    top = images.resolve("localhost/a:1").layers[0]
    assert os.readlink(os.path.join(top, "motd")) == "/etc/motd"
    assert os.stat(os.path.join(top, "gone")).st_rdev == 0 and not os.path.isfile(os.path.join(top, "gone"))
    shutil.rmtree(src)


def test_import_a_filesystem_tarball(images, tmp_path):
    from containerlab_magic.runtime.images.commit import import_tarball
    from images.build import busybox_tar
    from images.tarballs import gz

    path = tmp_path / "rootfs.tar.gz"
    path.write_bytes(gz(busybox_tar()))
    ref, _ = import_tarball(images.oci, str(path), "localhost/imported:1", changes={"Cmd": ["/bin/sh"]})
    image = images.resolve(str(ref))
    assert os.path.isfile(os.path.join(image.layers[0], "bin/busybox")) and image.config.cmd == ("/bin/sh",)
    assert catalog.history(images.oci, str(ref))[0]["created_by"] == "import rootfs.tar.gz"
    with pytest.raises(Exception, match="no tarball at"):
        import_tarball(images.oci, str(tmp_path / "missing.tar"), "localhost/x:1")
