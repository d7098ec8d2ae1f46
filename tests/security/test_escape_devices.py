"""C2: a node for a host device, made inside a bind mount, must not open.

Two guards stop it, each tested with the other removed: Docker's device
allowlist in the devices cgroup (mknod and open of anything else: EPERM), and
nodev on every bind (a node there does not open: EACCES).  The device is
/dev/kvm (or, without it, a loop device), opened read-only and closed at once:
that alone does nothing to the host.
"""

from __future__ import annotations

import os

from escape import attack, escape_checks  # noqa: F401 - escape_checks: autouse


def _disk_attack(tmp_path) -> list[str]:
    kind, dev = ("c", os.stat("/dev/kvm").st_rdev) if os.path.exists("/dev/kvm") else ("b", os.makedev(7, 0))
    script = (f"mknod /w/dev {kind} {os.major(dev)} {os.minor(dev)} || exit 3; "
              "true < /w/dev || exit 4; echo ESCAPED")
    return ["sh", "-c", script]


def _bind(tmp_path):
    from containerlab_magic.runtime.spec import Mount

    return (Mount(str(tmp_path), "/w"),)


def test_the_devices_cgroup_refuses_a_host_disk_node(tmp_path):
    both_off = attack(_disk_attack(tmp_path), off=("devices-cgroup", "nodev-binds"), mounts=_bind(tmp_path))
    assert b"ESCAPED" in both_off.stdout, both_off.stderr
    os.unlink(tmp_path / "dev")
    result = attack(_disk_attack(tmp_path), off=("nodev-binds",), mounts=_bind(tmp_path))
    assert result.exit_code == 3 and b"Operation not permitted" in result.stderr  # mknod itself refused


def test_binds_are_nodev(tmp_path):
    both_off = attack(_disk_attack(tmp_path), off=("devices-cgroup", "nodev-binds"), mounts=_bind(tmp_path))
    assert b"ESCAPED" in both_off.stdout, both_off.stderr
    os.unlink(tmp_path / "dev")
    result = attack(_disk_attack(tmp_path), off=("devices-cgroup",), mounts=_bind(tmp_path))
    assert result.exit_code == 4 and b"Permission denied" in result.stderr  # made, but it does not open


def test_the_allowed_devices_still_work():
    result = attack(["sh", "-c", "head -c 4 /dev/urandom | wc -c; echo > /dev/null && mknod /tmp/null c 1 3 && echo ok"])
    assert result.stdout.split() == [b"4", b"ok"], result.stderr
