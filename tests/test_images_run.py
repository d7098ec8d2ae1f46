"""A container runs from a pulled image: its layers are the overlay's lowerdirs.

The image comes from a real registry on 127.0.0.1 into the data root the
engine's shim reads; its names are removed and the store pruned at the end.
"""

from __future__ import annotations

import os

import pytest

from conftest import DATA, needs_root
from containerlab_magic.runtime import ContainerSpec
from containerlab_magic.runtime.images import ImageStore
from containerlab_magic.runtime.images.pull import pull
from images.fixtures import pushed, registry_processes  # noqa: F401

pytestmark = needs_root


@pytest.fixture(scope="module")
def pulled(pushed, engine):
    store = ImageStore(DATA)
    before = set(store.oci.refs())
    for name in ("layered:3", "zstd:1"):
        pull(store.oci, pushed.ref(name))
    yield store
    for name in set(store.oci.refs()) - before:
        store.oci.set_ref(name, None)
    engine.close()  # its warm spares hold the image's layers
    store.oci.prune()
    assert os.listdir(store.oci.blobs.tmp) == []


def sh(engine, script, image):
    return engine.run(ContainerSpec(["sh", "-c", script], image=image)).wait(timeout=60)


def test_run_a_pulled_image_with_whiteouts(engine, pulled, pushed, no_leaks):
    image = pushed.ref("layered:3")
    r = sh(engine, "ls -A /data /data/dir; cat /data/hard; ls -l /data/suid | cut -c1-10; "
                   "echo changed > /data/dir/z; cat /data/dir/z", image)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.decode().split() == ["/data:", "dir", "hard", "suid", "/data/dir:", "z", "old",
                                         "-rwsr-xr-x", "changed"]
    top = pulled.resolve(image).layers[0]
    with open(os.path.join(top, "data/dir/z")) as f:
        assert f.read() == "z\n"  # the container wrote to its own upper layer


def test_the_image_config_is_there_for_the_core(engine, pulled, pushed, no_leaks):
    image = pulled.resolve(pushed.ref("layered:3"))
    assert image.config.command() == ("/bin/sh",)
    assert image.config.command(("echo", "hi")) == ("echo", "hi")
    assert image.config.workdir == "/data" and image.config.stop_signal == "SIGINT"
    r = sh(engine, "cat /data/zstd.txt; readlink /bin/sh", pushed.ref("zstd:1"))
    assert r.stdout.decode().split() == ["squeezed", "busybox"]


def test_an_image_not_pulled_is_one_line(engine, pushed, no_leaks):
    from containerlab_magic.runtime.errors import NotFound

    with pytest.raises(NotFound, match="pull it first"):
        sh(engine, "true", pushed.ref("never:1"))


def test_pulled_images_are_listed_by_the_engine(engine, pulled, pushed):
    rows = {row["name"]: row for row in engine.images()}
    assert {"host", "busybox"} <= set(rows)
    row = rows[pushed.ref("layered:3")]
    assert row["ok"] and len(row["layers"]) == 3
