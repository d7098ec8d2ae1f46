"""save/load (docker-archive, OCI layout; skopeo's archives too), tag, rmi, images, inspect, history."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile

import pytest

from conftest import needs_root, our_mounts
from containerlab_magic.runtime.errors import Conflict, NotFound
from containerlab_magic.runtime.images import ImageStore
from containerlab_magic.runtime.images import archive, catalog
from containerlab_magic.runtime.images.pull import pull
from images.fixtures import pushed, registry_processes  # noqa: F401

pytestmark = needs_root


@pytest.fixture(scope="module", autouse=True)
def module_leaks():
    before_mounts, before_registries = our_mounts(), registry_processes()
    yield
    assert our_mounts() == before_mounts
    assert registry_processes() == before_registries


@pytest.fixture
def store(tmp_path):
    images = ImageStore(str(tmp_path / "data"))
    yield images.oci
    assert os.listdir(images.oci.blobs.tmp) == []


@pytest.fixture
def both(store, pushed):
    pull(store, pushed.ref("busybox:1.35"))
    pull(store, pushed.ref("layered:3"))
    return store


def test_images_rows_with_shared_sizes(both, pushed):
    rows = {row.repository: row for row in catalog.images(both)}
    busybox, layered = rows[pushed.ref("busybox")], rows[pushed.ref("layered")]
    assert (busybox.tag, layered.tag) == ("1.35", "3")
    assert busybox.size == busybox.shared > 1_900_000  # its one layer is layered's bottom layer
    assert layered.size > layered.shared == busybox.size
    assert busybox.id.startswith("sha256:") and busybox.id != layered.id


def test_tag_inspect_and_rmi_by_name_and_id(both, pushed):
    catalog.tag(both, pushed.ref("busybox:1.35"), "mine:v1")
    info = catalog.inspect(both, "mine:v1")
    assert info["RepoTags"] == ["docker.io/library/mine:v1"]
    assert info["Config"]["Cmd"] == ["/bin/sh"] and info["Config"]["ExposedPorts"] == {"8080/tcp": {}}
    assert all(os.path.isdir(layer["path"]) for layer in info["Layers"])
    short = info["Id"][7:19]
    with pytest.raises(Conflict, match="has 2 names"):
        catalog.rmi(both, short)
    freed = catalog.rmi(both, "mine:v1")
    assert freed["blobs"] == 0 and freed["untagged"] == ["docker.io/library/mine:v1"]  # still named
    freed = catalog.rmi(both, short)
    assert freed["blobs"] == 2 and freed["layers"] == 0  # manifest + config; the layer is layered's too
    with pytest.raises(NotFound):
        catalog.inspect(both, pushed.ref("busybox:1.35"))


def test_history_names_each_step_and_its_layer(both, pushed):
    rows = catalog.history(both, pushed.ref("layered:3"))
    made = [r for r in rows if r["layer"]]
    assert [r["created_by"] for r in made[:2]] == ["hand-made layer 3", "hand-made layer 2"]
    assert len(made) == 3 and made[-1]["size"] > 1_900_000


@pytest.mark.parametrize("fmt,skopeo", [("docker-archive", "docker-archive"), ("oci", "oci-archive")])
def test_save_load_round_trip_and_skopeo_reads_it(both, pushed, tmp_path, fmt, skopeo):
    path = str(tmp_path / f"saved-{fmt}.tar")
    archive.save(both, [pushed.ref("layered:3")], path, fmt)
    info = json.loads(subprocess.run(["skopeo", "inspect", f"{skopeo}:{path}"], check=True, capture_output=True,
                                     text=True).stdout)
    original = catalog.inspect(both, pushed.ref("layered:3"))
    assert info["Layers"] == ([layer["blob"] for layer in original["Layers"]] if fmt == "oci"
                              else original["RootFS"]["Layers"])
    fresh = ImageStore(str(tmp_path / "fresh")).oci
    names = archive.load(fresh, path)
    expected = pushed.ref("layered:3")
    assert names == [expected]
    loaded = catalog.inspect(fresh, expected)
    assert loaded["Id"] == original["Id"] and loaded["RootFS"] == original["RootFS"]
    if fmt == "oci":
        assert loaded["ManifestDigest"] == original["ManifestDigest"]
    with open(os.path.join(loaded["Layers"][-1]["path"], "data/dir/z")) as f:
        assert f.read() == "z\n"
    assert os.listdir(fresh.blobs.tmp) == []


def test_load_skopeo_docker_archive_through_its_legacy_symlinks(store, pushed, tmp_path):
    made = tmp_path / "skopeo.tar"
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{pushed.layouts}/umoci:busybox",
                    f"docker-archive:{made}:busybox:1.35"], check=True, capture_output=True)
    with tarfile.open(made) as tar:
        members = {m.name: m for m in tar.getmembers()}
        links = [m for m in members.values() if m.issym() and m.name.endswith("layer.tar")]
        assert links, "skopeo wrote no legacy layer.tar symlinks"
        manifest = json.loads(tar.extractfile("manifest.json").read())
    manifest[0]["Layers"] = [links[0].name]  # what older docker archives name: the symlink
    rewritten = tmp_path / "legacy.tar"
    with tarfile.open(made) as src, tarfile.open(rewritten, "w") as dst:
        for m in src.getmembers():
            if m.name == "manifest.json":
                data = json.dumps(manifest).encode()
                m.size = len(data)
                dst.addfile(m, io.BytesIO(data))
            else:
                dst.addfile(m, src.extractfile(m) if m.isfile() else None)
    assert archive.load(store, str(rewritten)) == ["docker.io/library/busybox:1.35"]
    image = ImageStore(os.path.dirname(os.path.dirname(store.root))).resolve("busybox:1.35")
    assert os.path.isfile(os.path.join(image.layers[0], "bin/busybox"))


def test_load_refuses_a_layer_that_is_not_its_diff_id(store, pushed, tmp_path):
    path = str(tmp_path / "saved.tar")
    pull(store, pushed.ref("busybox:1.35"))
    archive.save(store, [pushed.ref("busybox:1.35")], path, "docker-archive")
    evil = tmp_path / "evil.tar"
    with tarfile.open(path) as src, tarfile.open(evil, "w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read() if m.isfile() else None
            if m.name.endswith("layer.tar"):
                data = data.replace(b"root:x:0:0", b"root:x:0:1")
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    fresh = ImageStore(str(tmp_path / "fresh")).oci
    with pytest.raises(Exception, match="unpacks to sha256:.*but the image config says"):
        archive.load(fresh, str(evil))
    assert fresh.refs() == {} and os.listdir(fresh.layers) == []


def test_load_an_oci_layout_directory_and_too_many_layers_to_mount(tmp_path):
    from containerlab_magic.runtime.images.config import BadImage
    from images import build
    from images.tarballs import entry, tar_bytes

    layout = build.Layout(str(tmp_path / "layout"))
    layout.tag("few", layout.image([(tar_bytes([entry("f0", data=b"0")]), build.OCI_LAYER_GZIP)]))
    layout.tag("many", layout.image([(tar_bytes([entry(f"f{i}", data=b"%d" % i)]), build.OCI_LAYER_GZIP)
                                     for i in range(60)]))
    images = ImageStore(str(tmp_path / "data"))
    names = archive.load(images.oci, layout.path, repository="localhost/lab")
    assert names == ["localhost/lab:few", "localhost/lab:many"]
    assert len(images.resolve("localhost/lab:few").layers) == 1
    with pytest.raises(BadImage, match="has 60 layers, but a mount\\(2\\) option page holds only about"):
        images.resolve("localhost/lab:many")
