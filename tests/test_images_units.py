"""Pure pieces of the image layer, no root, no registry: references, challenges,
credentials, platform choice, image config.  (The rest is tested against real
registries and a real kernel in the other test_images_* modules.)"""

from __future__ import annotations

import base64
import json
import os

import pytest

from containerlab_magic.runtime.errors import SpecError
from containerlab_magic.runtime.images import auth
from containerlab_magic.runtime.images.config import BadImage, parse_config
from containerlab_magic.runtime.images.manifest import (DOCKER_LIST, OCI_INDEX, ACCEPT, media_type_of, parse_manifest,
                                                        pick_platform)
from containerlab_magic.runtime.images.reference import is_loopback, parse


@pytest.mark.parametrize("text,expected,api", [
    ("busybox", "docker.io/library/busybox:latest", "registry-1.docker.io"),
    ("busybox:1.35", "docker.io/library/busybox:1.35", "registry-1.docker.io"),
    ("team/app", "docker.io/team/app:latest", "registry-1.docker.io"),
    ("index.docker.io/library/alpine:3", "docker.io/library/alpine:3", "registry-1.docker.io"),
    ("127.0.0.1:5000/busybox:1.35", "127.0.0.1:5000/busybox:1.35", "127.0.0.1:5000"),
    ("localhost/a/b", "localhost/a/b:latest", "localhost"),
    ("[::1]:5000/x:y", "[::1]:5000/x:y", "[::1]:5000"),
    ("ghcr.io/o/r@sha256:" + "a" * 64, "ghcr.io/o/r@sha256:" + "a" * 64, "ghcr.io"),
    ("q.example/a:t@sha256:" + "b" * 64, "q.example/a:t@sha256:" + "b" * 64, "q.example"),
])
def test_references_normalise_as_docker_does(text, expected, api, monkeypatch):
    monkeypatch.delenv("CONTAINERLAB_REGISTRY", raising=False)
    ref = parse(text)
    assert (str(ref), ref.api_host) == (expected, api)


def test_the_default_registry_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("CONTAINERLAB_REGISTRY", "127.0.0.1:5000")
    assert str(parse("busybox:1.35")) == "127.0.0.1:5000/busybox:1.35"
    assert parse("busybox:1.35").familiar() == "127.0.0.1:5000/busybox:1.35"
    monkeypatch.delenv("CONTAINERLAB_REGISTRY")
    assert parse("busybox:1.35").familiar() == "busybox:1.35"


@pytest.mark.parametrize("text,says", [
    ("Busybox", "invalid image name"), ("a:b:c", "invalid image name"), ("x@sha256:12", "invalid digest"),
    ("", "invalid image reference"), ("a//b", "invalid image name"), ("x:-bad", "invalid tag"),
    (" busybox", "invalid image reference"), ("bad_host:5000/x", "invalid registry"),
])
def test_bad_references_are_one_line(text, says):
    with pytest.raises(SpecError, match=says) as e:
        parse(text)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("host,loopback", [("127.0.0.1:5000", True), ("127.9.9.9", True), ("localhost:80", True),
                                           ("[::1]:5000", True), ("128.0.0.1:5000", False),
                                           ("localhost.example:5000", False), ("docker.io", False)])
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback


def test_challenges_parse():
    kind, params = auth.parse_challenge('Bearer realm="http://127.0.0.1:5001/token",service="svc",'
                                        'scope="repository:a/b:pull,push",error="insufficient_scope"')
    assert kind == "bearer" and params == {"realm": "http://127.0.0.1:5001/token", "service": "svc",
                                           "scope": "repository:a/b:pull,push", "error": "insufficient_scope"}
    assert auth.parse_challenge('Basic realm="clab"') == ("basic", {"realm": "clab"})


def test_credentials_ours_first_then_dockers(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTAINERLAB_AUTH_FILE", str(tmp_path / "ours" / "auth.json"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    os.makedirs(tmp_path / "docker")
    hub = base64.b64encode(b"hubuser:hubpass").decode()
    (tmp_path / "docker" / "config.json").write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": hub}, "q.example": {"auth": base64.b64encode(b"d:1").decode()}}}))
    assert auth.credentials("docker.io") == ("hubuser", "hubpass")
    assert auth.credentials("registry-1.docker.io") == ("hubuser", "hubpass")
    assert auth.credentials("q.example") == ("d", "1")
    auth.save_credentials("q.example", "ours", "p:w")  # a colon in a password survives
    assert auth.credentials("q.example") == ("ours", "p:w")
    assert oct(os.stat(tmp_path / "ours" / "auth.json").st_mode & 0o777) == "0o600"
    auth.save_credentials("q.example", "", None)
    assert auth.credentials("q.example") == ("d", "1")  # docker's, never written
    assert auth.credentials("other.example") is None


def _index(kind: str, *platforms: tuple[str, str, str]) -> bytes:
    return json.dumps({"mediaType": kind, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + str(i) * 64, "size": 1,
         "platform": {"os": o, "architecture": a, **({"variant": v} if v else {})}}
        for i, (o, a, v) in enumerate(platforms)]}).encode()


def test_platform_choice():
    data = _index(OCI_INDEX, ("linux", "arm", "v6"), ("linux", "arm", "v7"), ("linux", "amd64", ""),
                  ("windows", "amd64", ""))
    assert pick_platform(data, ("linux", "amd64", "")).digest == "sha256:" + "2" * 64
    assert pick_platform(data, ("linux", "arm", "v7")).digest == "sha256:" + "1" * 64
    arm64 = _index(DOCKER_LIST, ("linux", "arm64", "v8"))
    assert pick_platform(arm64, ("linux", "arm64", "")).digest == "sha256:" + "0" * 64
    with pytest.raises(BadImage, match=r"no image for linux/s390x in this index \(it has linux/amd64, linux/arm/v6, "
                                       r"linux/arm/v7, windows/amd64\)"):
        pick_platform(data, ("linux", "s390x", ""))


def test_manifest_types_and_schema1_refused():
    assert all(t in ACCEPT for t in ("application/vnd.oci.image.manifest.v1+json", OCI_INDEX, DOCKER_LIST,
                                     "application/vnd.docker.distribution.manifest.v2+json"))
    schema1 = json.dumps({"schemaVersion": 1, "name": "x", "fsLayers": []}).encode()
    with pytest.raises(BadImage, match="schema 1 images are not supported"):
        media_type_of(schema1, "application/vnd.docker.distribution.manifest.v1+prettyjws")
    evil = json.dumps({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"digest": "sha256:../../etc/passwd", "size": 1}, "layers": []}).encode()
    with pytest.raises(BadImage, match="lacks a sha256 digest"):
        parse_manifest(evil)


def test_image_config_and_docker_command_rules():
    config = parse_config(json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/entry"], "Cmd": ["--help"], "Env": ["A=1", "B=x=y"], "WorkingDir": "/w",
                   "User": "app", "ExposedPorts": {"80/tcp": {}, "53/udp": {}}, "StopSignal": "SIGQUIT",
                   "Labels": {"k": "v"}},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "c" * 64]}}).encode())
    assert config.env == (("A", "1"), ("B", "x=y")) and config.exposed_ports == ("53/udp", "80/tcp")
    assert config.command() == ("/entry", "--help")
    assert config.command(("run",)) == ("/entry", "run")  # a given command replaces Cmd
    assert config.command(("x",), entrypoint=("/other",)) == ("/other", "x")  # --entrypoint clears Cmd
    shell = parse_config(json.dumps({"config": {"Cmd": "echo hi"}}).encode())
    assert shell.cmd == ("/bin/sh", "-c", "echo hi")
    with pytest.raises(BadImage):
        parse_config(b"[1, 2]")
