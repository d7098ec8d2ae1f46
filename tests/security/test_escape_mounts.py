"""M1, M4, M7: what a container can do to host files through its mounts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from escape import attack, lab, escape_checks  # noqa: F401 - escape_checks: autouse

from containerlab_magic.runtime.spec import Mount


@pytest.fixture
def tree_with_submount(tmp_path):
    """tmp_path/src with a small tmpfs mounted at src/sub (a host mount below a bind source)."""
    sub = tmp_path / "src" / "sub"
    sub.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "clab-test", str(sub)], check=True)
    try:
        yield tmp_path / "src"
    finally:
        subprocess.run(["umount", str(sub)], check=True)


def test_a_read_only_bind_is_read_only_in_its_submounts(tree_with_submount):
    write = ["sh", "-c", "echo x > /data/sub/written && echo WROTE"]
    ro = (Mount(str(tree_with_submount), "/data", read_only=True),)
    assert b"WROTE" in attack(write, off=("recursive-ro",), mounts=ro).stdout  # the submount stayed writable
    os.unlink(tree_with_submount / "sub" / "written")
    result = attack(write, mounts=ro)
    assert b"WROTE" not in result.stdout and b"Read-only file system" in result.stderr
    assert not (tree_with_submount / "sub" / "written").exists()


def test_etc_hosts_is_not_a_writable_host_file():
    grow = ["sh", "-c", "echo 10.9.9.9 evil >> /etc/hosts && echo WROTE"]
    assert b"WROTE" in attack(grow, off=("readonly-hosts",)).stdout
    result = attack(grow)
    assert b"WROTE" not in result.stdout and b"Read-only file system" in result.stderr


def test_a_setuid_file_in_a_bind_gives_no_privilege(tmp_path):
    """With no_new_privileges turned off (a user's choice), a setuid-root program in a bind
    would make a non-root container user root: nosuid on binds stops it."""
    python = os.path.realpath(sys.executable if sys.executable.startswith("/usr/") else "/usr/bin/python3")
    setuid_copy = tmp_path / "py"
    shutil.copy(python, setuid_copy)
    os.chmod(setuid_copy, 0o4755)
    os.chmod(tmp_path, 0o755)  # the bind's root: uid 1000 must reach /w/py
    try:
        probe = ["/w/py", "-c", "import os; print(os.geteuid())"]
        fields = dict(image="host", user="1000", no_new_privileges=False, mounts=(Mount(str(tmp_path), "/w"),))
        assert attack(probe, off=("nodev-binds",), **fields).stdout.strip() == b"0"  # root, from a bind
        assert attack(probe, **fields).stdout.strip() == b"1000"
    finally:
        os.unlink(setuid_copy)


def test_a_bind_source_swapped_for_a_symlink_is_refused(tmp_path):
    """Between the check of -v SRC and the mount, SRC (in a directory a container can write)
    becomes a symlink to the host's /etc: the bind must not follow it."""
    from containerlab_magic.runtime import ContainerSpec

    shared = tmp_path / "shared"
    shared.mkdir()
    spec = ContainerSpec(("cat", "/data/hostname"), image="busybox", mounts=(Mount.parse(f"{shared}:/data:ro"),))
    shared.rmdir()
    os.symlink("/etc", shared)  # what a container with tmp_path bound in could do
    with lab(("bind-nofollow",)) as engine:
        assert engine.run(spec).wait(timeout=60).stdout == open("/etc/hostname", "rb").read()  # the host's
    with lab() as engine:
        result = engine.run(spec).wait(timeout=60)
    assert result.exit_code != 0 and "Too many levels of symbolic links" in (result.error or ""), result


def test_hosts_rewrites_survive_bytes_that_are_not_utf8(tmp_path):
    from containerlab_magic.runtime.network import hosts

    path = tmp_path / "hosts"
    path.write_bytes(b"127.0.0.1\tlocalhost\n10.0.0.9\tcaf\xe9\n")
    assert hosts.rewrite(str(path), hosts.render_block("lab", [("10.1.0.2", "web")]))
    data = path.read_bytes()
    assert b"caf\xe9" in data and b"10.1.0.2\tweb" in data
