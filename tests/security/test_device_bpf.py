"""C2 on cgroup v2: the device BPF program itself, on whatever cgroup2 hierarchy this host has.

On a v2 host that is /sys/fs/cgroup (the engine's own groups get the program:
test_escape_devices.py runs there through tests/vm/run-cgroup-v2.sh); a hybrid
v1 host like this one has an empty cgroup2 at /sys/fs/cgroup/unified, where a
process's device access is checked all the same.  A forked child joins a group
of ours, tries a harmless device outside the allowlist (opened read-only,
closed at once) and one inside it.
"""

from __future__ import annotations

import os

import pytest
from escape import escape_checks  # noqa: F401 - autouse: root only, no leaks

from containerlab_magic.runtime.cgroups.v2 import devices

ROOTS = [p for p in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified") if os.path.exists(os.path.join(p, "cgroup.procs"))
         and open("/proc/mounts").read().count(f" {p} cgroup2 ")]
OUTSIDE = "/dev/kvm" if os.path.exists("/dev/kvm") else "/dev/loop0"


@pytest.fixture
def group():
    if not ROOTS:
        pytest.skip("no cgroup2 hierarchy mounted here")
    path = os.path.join(ROOTS[0], f"containerlab-bpf-test-{os.getpid()}")
    os.mkdir(path)
    try:
        yield path
    finally:
        os.rmdir(path)


def _opens_in(group: str) -> dict[str, str]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            with open(os.path.join(group, "cgroup.procs"), "w") as f:
                f.write("0")
            out = []
            for path in ("/dev/null", OUTSIDE):
                try:
                    os.close(os.open(path, os.O_RDONLY))
                    out.append(f"{path}=ok")
                except OSError as e:
                    out.append(f"{path}={e.errno}")
            os.write(write, " ".join(out).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    data = os.read(read, 4096).decode()
    os.close(read)
    return dict(item.split("=") for item in data.split())


def test_the_device_program_allows_the_allowlist_and_refuses_the_rest(group):
    if not os.path.exists(OUTSIDE):
        pytest.skip("neither /dev/kvm nor /dev/loop0 to try")
    assert _opens_in(group) == {"/dev/null": "ok", OUTSIDE: "ok"}  # no program: the host's own rules
    devices.attach(group)
    assert _opens_in(group) == {"/dev/null": "ok", OUTSIDE: "1"}  # EPERM
    devices.detach(group)  # --privileged
    assert _opens_in(group) == {"/dev/null": "ok", OUTSIDE: "ok"}


def test_a_nested_group_may_add_its_own_program(group):
    """ALLOW_MULTI (as runc): a lab inside a container's group can still limit its own groups."""
    devices.attach(group)
    inner = os.path.join(group, "inner")
    os.mkdir(inner)
    try:
        devices.attach(inner)
        assert _opens_in(inner)[OUTSIDE] == "1"
    finally:
        os.rmdir(inner)


def test_the_program_is_one_block_per_rule():
    code = devices.program()
    assert len(code) % 8 == 0 and code[-8:] == bytes([0x95]) + bytes(7)  # ends in exit
    assert code[-16:-8] == bytes([0xB7, 0]) + bytes(6)  # r0 = 0: refuse what no rule allowed
