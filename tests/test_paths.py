"""Per-user state and image directories, checked with real users of this host.

Runs paths.py as `clabtest` and as `nobody` (setpriv), with TMPDIR pointing at a
sticky, world-writable directory of the test's own: the squatting cases happen
there, never in the real /tmp.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import tempfile

import pytest

from containerlab_magic.runtime import paths
from pod import users

pytestmark = pytest.mark.skipif(users.why_not() is not None, reason=str(users.why_not()))

NOBODY = pwd.getpwnam("nobody")
WHERE = ("from containerlab_magic.runtime import paths\n"
         "try:\n"
         "    print(paths.state_root()); print(paths.data_root())\n"
         "except paths.PathError as e:\n"
         "    print('PathError:', e)\n")


@pytest.fixture(scope="module")
def source():
    copy = users.package_copy()
    yield copy
    shutil.rmtree(copy)


@pytest.fixture
def shared_tmp():
    """A private stand-in for /tmp: mode 1777 like the real one."""
    top = tempfile.mkdtemp(prefix="clab-paths-")
    os.chmod(top, 0o1777)
    yield top
    shutil.rmtree(top)


@pytest.fixture(scope="module")
def student():
    return users.ensure_user()


def where(user, source, **env) -> list[str]:
    home = env.pop("HOME", user.pw_dir)
    ran = users.run_as(user.pw_uid, user.pw_gid, source, WHERE, env=env, home=home)
    assert ran.returncode == 0, ran.stderr
    return ran.stdout.splitlines()


def _mode_owner(path: str) -> tuple[int, int]:
    st = os.lstat(path)
    return stat.S_IMODE(st.st_mode), st.st_uid


def test_root_keeps_the_system_dirs(monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("root's paths")
    monkeypatch.delenv("CONTAINERLAB_STATE", raising=False)
    monkeypatch.delenv("CONTAINERLAB_DATA", raising=False)
    assert (paths.state_root(), paths.data_root()) == ("/run/containerlab", "/var/lib/containerlab")


def test_user_without_xdg_runtime_dir_gets_a_private_temp_dir(student, source, shared_tmp):
    home = tempfile.mkdtemp(prefix="clab-home-", dir=shared_tmp)
    os.chown(home, student.pw_uid, student.pw_gid)
    state, data = where(student, source, TMPDIR=shared_tmp, HOME=home)
    assert state == os.path.join(shared_tmp, f"containerlab-magic-{student.pw_uid}")
    assert data == os.path.join(home, ".local/share/containerlab-magic")
    assert _mode_owner(state) == (0o700, student.pw_uid)
    assert _mode_owner(data) == (0o700, student.pw_uid)


def test_user_with_xdg_runtime_dir_keeps_state_there(student, source, shared_tmp):
    runtime = os.path.join(shared_tmp, "run-user")
    os.mkdir(runtime, 0o700)
    os.chown(runtime, student.pw_uid, student.pw_gid)
    state, _ = where(student, source, TMPDIR=shared_tmp, XDG_RUNTIME_DIR=runtime,
                     XDG_DATA_HOME=os.path.join(runtime, "data"))
    assert state == os.path.join(runtime, "containerlab-magic")
    assert _mode_owner(state) == (0o700, student.pw_uid)


def test_someone_elses_xdg_runtime_dir_is_not_used(student, source, shared_tmp):
    foreign = os.path.join(shared_tmp, "run-root")
    os.mkdir(foreign, 0o777)  # root's, and writable by all: never the student's state
    os.chmod(foreign, 0o777)
    state, _ = where(student, source, TMPDIR=shared_tmp, XDG_RUNTIME_DIR=foreign,
                     XDG_DATA_HOME=os.path.join(shared_tmp, "d"))
    assert state == os.path.join(shared_tmp, f"containerlab-magic-{student.pw_uid}")
    assert os.listdir(foreign) == []


@pytest.mark.parametrize("squat", ["directory", "symlink"])
def test_a_squatted_temp_dir_is_refused_in_one_line(student, source, shared_tmp, squat):
    target = os.path.join(shared_tmp, f"containerlab-magic-{student.pw_uid}")
    if squat == "directory":  # nobody made it first, open to the student: would own the sockets
        made = users.run_as(NOBODY.pw_uid, NOBODY.pw_gid, source,
                            f"import os; os.mkdir({target!r}); os.chmod({target!r}, 0o777)")
        assert made.returncode == 0, made.stderr
    else:
        os.symlink(tempfile.mkdtemp(dir=shared_tmp), target)
    lines = where(student, source, TMPDIR=shared_tmp, XDG_DATA_HOME=os.path.join(shared_tmp, "d"))
    assert len(lines) == 1 and lines[0].startswith("PathError: "), lines
    assert target in lines[0] and ("belongs to uid" in lines[0] or "not a directory" in lines[0])
    assert not os.path.exists(os.path.join(shared_tmp, "d"))  # refused before anything else was made


TWO_USERS = """
import json, os, socket
from containerlab_magic.runtime import paths
state = paths.state_root()
box = os.path.join(state, "containers", "web")
os.makedirs(box, exist_ok=True)
with open(os.path.join(box, "state.json"), "w") as f:
    json.dump({"status": "running"}, f)
sock = socket.socket(socket.AF_UNIX)
sock.bind(os.path.join(state, "shim.sock"))
print(state)
"""

PEEK = """
import json, os, socket, sys
state = sys.argv[1] if len(sys.argv) > 1 else {state!r}
seen = {{}}
for name, try_it in (("list", lambda: os.listdir(state)),
                     ("read", lambda: open(os.path.join(state, "containers/web/state.json")).read()),
                     ("connect", lambda: socket.socket(socket.AF_UNIX).connect(os.path.join(state, "shim.sock"))),
                     ("remove", lambda: os.unlink(os.path.join(state, "containers/web/state.json")))):
    try:
        try_it()
        seen[name] = "allowed"
    except OSError as e:
        seen[name] = type(e).__name__
print(json.dumps(seen))
"""


def test_two_users_cannot_see_or_touch_each_others_containers(student, source, shared_tmp):
    made = users.run_as(student.pw_uid, student.pw_gid, source, TWO_USERS,
                        env={"TMPDIR": shared_tmp, "XDG_DATA_HOME": os.path.join(shared_tmp, "d")})
    assert made.returncode == 0, made.stderr
    state = made.stdout.strip()
    peek = users.run_as(NOBODY.pw_uid, NOBODY.pw_gid, source, PEEK.format(state=state))
    assert peek.returncode == 0, peek.stderr
    assert json.loads(peek.stdout) == {"list": "PermissionError", "read": "PermissionError",
                                       "connect": "PermissionError", "remove": "PermissionError"}
    assert os.path.exists(os.path.join(state, "containers/web/state.json"))
    # ...and the other user's own state is elsewhere, just as private.
    theirs = where(NOBODY, source, TMPDIR=shared_tmp, HOME="/nonexistent",
                   XDG_DATA_HOME=os.path.join(shared_tmp, "nobody-data"))[0]
    assert theirs != state and _mode_owner(theirs) == (0o700, NOBODY.pw_uid)
    mine = users.run_as(student.pw_uid, student.pw_gid, source, PEEK.format(state=theirs))
    assert json.loads(mine.stdout)["list"] == "PermissionError"


def test_state_root_without_create_makes_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("CONTAINERLAB_STATE", str(tmp_path / "state"))
    assert paths.state_root(create=False) == str(tmp_path / "state")
    assert not (tmp_path / "state").exists()


def test_a_test_user_the_session_made_is_removed_with_it():
    """ensure_user makes a user only when missing, and remove_created (called at session end
    by conftest) takes away exactly the users it made, home and subuid lines included."""
    import pwd

    name = "clabgone"
    if os.geteuid() != 0:
        pytest.skip("making users needs root (useradd)")
    try:
        pwd.getpwnam(name)
        pytest.skip(f"user {name} exists already: not ours to remove")
    except KeyError:
        pass
    made = users.CREATED[:]
    users.CREATED.clear()
    try:
        home = users.ensure_user(name).pw_dir
        assert users.CREATED == [name] and os.path.isdir(home)
        assert users.remove_created() == [name]
        with pytest.raises(KeyError):
            pwd.getpwnam(name)
        assert not os.path.exists(home)
        assert name not in open("/etc/subuid").read()
    finally:
        users.CREATED[:0] = made
