"""H2: the host root's session keyring must not be visible from a container.

The test process puts a key in a session keyring of its own (which the shim
and so every container inherit); the attack searches the session keyring for
it and reads it.  Two guards: the container's own session keyring, and
seccomp refusing keyctl; each is tested with the other removed.
"""

from __future__ import annotations

import ctypes
import os

import pytest
from escape import attack, escape_checks  # noqa: F401 - escape_checks: autouse

SYS_ADD_KEY, SYS_KEYCTL = 248, 250  # x86_64
KEY_SPEC_SESSION_KEYRING = -3
KEYCTL_JOIN_SESSION_KEYRING, KEYCTL_SEARCH, KEYCTL_READ = 1, 10, 11
SECRET = b"not-for-containers"

STEAL = f"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
key = libc.syscall({SYS_KEYCTL}, {KEYCTL_SEARCH}, {KEY_SPEC_SESSION_KEYRING}, b"user", b"clab-escape-test", 0)
buf = ctypes.create_string_buffer(64)
n = libc.syscall({SYS_KEYCTL}, {KEYCTL_READ}, key, buf, 64) if key > 0 else -1
print(buf.raw[:n].decode() if n > 0 else "blocked", ctypes.get_errno())
"""

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers here are x86_64's")


@pytest.fixture(scope="module", autouse=True)
def host_key():
    """A key in a new session keyring of this test process (and so of shims it starts)."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.syscall(SYS_KEYCTL, KEYCTL_JOIN_SESSION_KEYRING, b"clab-escape-test") > 0
    key = libc.syscall(SYS_ADD_KEY, b"user", b"clab-escape-test", SECRET, len(SECRET), KEY_SPEC_SESSION_KEYRING)
    assert key > 0, os.strerror(ctypes.get_errno())
    yield


def test_a_container_has_its_own_session_keyring():
    stolen = attack(["python3", "-c", STEAL], image="host", off=("keyring", "seccomp"))
    assert stolen.stdout.split()[0] == SECRET, stolen.stderr
    result = attack(["python3", "-c", STEAL], image="host", off=("seccomp",))
    assert result.stdout.split()[0] == b"blocked", result.stderr


def test_seccomp_refuses_keyctl():
    stolen = attack(["python3", "-c", STEAL], image="host", off=("keyring", "seccomp"))
    assert stolen.stdout.split()[0] == SECRET, stolen.stderr
    result = attack(["python3", "-c", STEAL], image="host", off=("keyring",))
    assert result.stdout.split() == [b"blocked", b"1"], result.stderr  # EPERM from the filter
