"""M7, the host's side: a container whose root is the host's root makes no setuid,
setgid or file-capability file in a writable bind (runtime/security/setid.py).

Each attack writes only into the test's own directory, and every file it made is
removed at the end whatever happened (a setuid-root copy must not outlive the test).
"""

from __future__ import annotations

import os
import stat

import pytest
from escape import attack, escape_checks  # noqa: F401 - escape_checks: autouse

from containerlab_magic.runtime.spec import Mount

SETID = stat.S_ISUID | stat.S_ISGID

# Every way a process makes a file with a set-id mode or file capabilities, each
# printing OK or its error.  (The host image has Python; /w is the bind.)
PYTHON_ATTACKS = r"""
import os, struct
def attempt(name, action):
    try:
        action()
        print(name, "OK")
    except OSError as e:
        print(name, e.strerror)
def o_tmpfile():
    fd = os.open("/w", os.O_TMPFILE | os.O_WRONLY, 0o4755)
    os.link(f"/proc/self/fd/{fd}", "/w/tmpfile")
def fchmod():
    fd = os.open("/w/fchmod", os.O_CREAT | os.O_WRONLY, 0o755)
    os.fchmod(fd, 0o6755)
def xattr():
    open("/w/caps", "w").close()
    # file capabilities v2: effective, permitted = CAP_SETUID (a host user running it gets root)
    os.setxattr("/w/caps", "security.capability", struct.pack("<5I", 0x02000001, 1 << 7, 0, 0, 0))
attempt("open", lambda: os.close(os.open("/w/open", os.O_CREAT | os.O_WRONLY, 0o4755)))
attempt("mknod", lambda: os.mknod("/w/mknod", stat.S_IFREG | 0o2755))
attempt("tmpfile", o_tmpfile)
attempt("fchmod", fchmod)
attempt("xattr", xattr)
"""


@pytest.fixture
def bind_dir(tmp_path):
    """A host directory to bind; emptied of whatever an attack made, at the end."""
    target = tmp_path / "w"
    target.mkdir()
    try:
        yield target
    finally:
        for entry in os.listdir(target):
            os.unlink(target / entry)


def setid_files(directory) -> list[str]:
    return sorted(name for name in os.listdir(directory) if os.lstat(directory / name).st_mode & SETID)


def file_caps(path) -> bytes | None:
    try:
        return os.getxattr(path, "security.capability")
    except OSError:
        return None


def test_chmod_u_s_in_a_writable_bind_leaves_no_setuid_file_on_the_host(bind_dir):
    chmod = ["sh", "-c", "cp /bin/busybox /w/sh && chmod 4755 /w/sh; chmod g+s /w/sh; echo done"]
    mounts = (Mount(str(bind_dir), "/w"),)
    attack(chmod, off=("bind-setid",), mounts=mounts)
    assert setid_files(bind_dir) == ["sh"]  # without the guard: a setuid-root busybox in a host directory
    os.unlink(bind_dir / "sh")
    result = attack(chmod, mounts=mounts)
    assert b"Operation not permitted" in result.stderr, result.stderr
    assert (bind_dir / "sh").exists() and setid_files(bind_dir) == []


def test_no_system_call_makes_a_set_id_or_capability_file_in_a_writable_bind(bind_dir):
    mounts = (Mount(str(bind_dir), "/w"),)
    command = ["python3", "-c", "import stat\n" + PYTHON_ATTACKS]
    before = attack(command, off=("bind-setid",), image="host", mounts=mounts).stdout.decode()
    # (linking an O_TMPFILE file works only where the bind's filesystem allows it: not on every host)
    assert all(f"{name} OK" in before for name in ("open", "mknod", "fchmod", "xattr")), before
    made = ["fchmod", "mknod", "open"] + (["tmpfile"] if "tmpfile OK" in before else [])
    assert setid_files(bind_dir) == made and file_caps(bind_dir / "caps")
    for entry in os.listdir(bind_dir):
        os.unlink(bind_dir / entry)
    after = attack(command, image="host", mounts=mounts).stdout.decode()
    assert all(f"{name} OK" not in after for name in ("open", "mknod", "tmpfile", "fchmod", "xattr")), after
    assert setid_files(bind_dir) == [] and file_caps(bind_dir / "caps") is None


def test_set_id_files_stay_possible_where_no_writable_bind_reaches_the_host(bind_dir):
    """The container's own filesystem keeps them (a package that installs sudo): the guard
    applies only with a writable bind; a read-only one does not bring it."""
    own = ["sh", "-c", "cp /bin/busybox /tmp/sh && chmod 4755 /tmp/sh && stat -c %A /tmp/sh"]
    assert attack(own).stdout.strip() == b"-rwsr-xr-x"
    ro = (Mount(str(bind_dir), "/w", read_only=True),)
    assert attack(own, mounts=ro).stdout.strip() == b"-rwsr-xr-x"
    # with a writable bind the same command fails everywhere in that container: the filter
    # cannot tell the bind from the rest (the price, documented in docs/security.md)
    result = attack(own, mounts=(Mount(str(bind_dir), "/w"),))
    assert result.exit_code != 0 and b"Operation not permitted" in result.stderr
