"""Capabilities, no_new_privs, inheritable set, masked /proc paths."""

from __future__ import annotations

from escape import attack, escape_checks  # noqa: F401 - escape_checks: autouse

from containerlab_magic.runtime.security import DEFAULT_MASK

MOUNT = ["sh", "-c", "mount -t tmpfs none /mnt && echo MOUNTED"]
REGAIN_ROOT = ("import shutil, os, sys; shutil.copy(os.path.realpath('/usr/bin/python3'), '/x'); "
               "os.chmod('/x', 0o4755); os.setgid(1000); os.setuid(1000); "
               "os.execv('/x', ['x', '-c', 'import os; print(os.geteuid())'])")


def test_mount_needs_a_capability_the_container_lacks():
    assert b"MOUNTED" in attack(MOUNT, cap_add=("SYS_ADMIN",), seccomp="unconfined").stdout
    result = attack(MOUNT)
    assert b"MOUNTED" not in result.stdout and b"denied" in result.stderr


def test_no_new_privs_stops_a_setuid_file_from_giving_root_back():
    assert attack(["python3", "-c", REGAIN_ROOT], image="host", no_new_privileges=False).stdout.strip() == b"0"
    assert attack(["python3", "-c", REGAIN_ROOT], image="host").stdout.strip() == b"1000"


def test_the_inheritable_set_is_empty():
    status = ["grep", "-E", "^Cap(Inh|Bnd)", "/proc/self/status"]
    before = dict(line.split() for line in attack(status, off=("inheritable-caps",)).stdout.decode().splitlines())
    assert int(before["CapInh:"], 16) == DEFAULT_MASK
    after = dict(line.split() for line in attack(status).stdout.decode().splitlines())
    assert int(after["CapInh:"], 16) == 0 and int(after["CapBnd:"], 16) == DEFAULT_MASK


def test_proc_interrupts_is_masked():
    read = ["sh", "-c", "wc -c < /proc/interrupts"]
    assert int(attack(read, off=("masked-paths",)).stdout) > 0  # the host's interrupt counts
    assert int(attack(read).stdout) == 0
