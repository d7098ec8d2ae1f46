"""Where the lab keeps things, per user.

State (one directory per container, the shim's socket) lives in a runtime
directory that a reboot clears; images live in a data directory.  Root uses
/run/containerlab and /var/lib/containerlab.  Any other user gets directories
of their own, mode 0700, so that two users on one host cannot see or touch
each other's containers (the socket is reachable only through its directory):

    state   $XDG_RUNTIME_DIR/containerlab-magic      (the XDG Base Directory spec: a
            directory owned by the user, mode 0700, cleared at logout)
            else $TMPDIR-or-/tmp/containerlab-magic-UID   (made 0700 by us)
    images  $XDG_DATA_HOME-or-~/.local/share/containerlab-magic   (0700)

A directory in a shared place such as /tmp can be made first by someone else
(a squatting attack: they would own our sockets and state), so every directory
is checked with lstat(2) after it is made: it must be a real directory, owned
by us, writable by nobody else.  CONTAINERLAB_STATE and CONTAINERLAB_DATA
override both (tests use them) and get the same check.
"""

from __future__ import annotations

import os
import stat

from .errors import ContainerError

APP = "containerlab-magic"


class PathError(ContainerError):
    """A directory the lab would use is unsafe or unusable; the message says how to fix it."""


def _xdg_runtime_dir() -> str | None:
    """$XDG_RUNTIME_DIR when it is what the spec promises: ours, 0700, a directory."""
    path = os.environ.get("XDG_RUNTIME_DIR")
    if not path or not os.path.isabs(path):
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        return None
    return path if os.access(path, os.W_OK | os.X_OK) else None


def private_dir(path: str, what: str) -> str:
    """Make `path` (mode 0700) unless it exists; then refuse it unless it is ours and private.

    Parents are made with the default mode; the check is on `path` itself.
    """
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise PathError(f"cannot make the {what} directory {path}: {e.strerror}; "
                        f"set {_ENV[what]} to a directory of yours") from None
    st = os.lstat(path)
    uid = os.geteuid()
    if not stat.S_ISDIR(st.st_mode):
        raise PathError(f"the {what} directory {path} is not a directory (a symlink?): remove it, "
                        f"or set {_ENV[what]} to a directory of yours")
    if st.st_uid != uid:
        raise PathError(f"the {what} directory {path} belongs to uid {st.st_uid}, not to you (uid {uid}): "
                        f"someone may have made it first; remove it, or set {_ENV[what]} to a directory of yours")
    if st.st_mode & 0o022:
        raise PathError(f"the {what} directory {path} is writable by others (mode {st.st_mode & 0o777:o}): "
                        f"`chmod 700 {path}`")
    return path


_ENV = {"state": "CONTAINERLAB_STATE", "image": "CONTAINERLAB_DATA"}


def state_root(create: bool = True) -> str:
    """The state directory; made (0700) and checked unless create is False."""
    env = os.environ.get("CONTAINERLAB_STATE")
    if env:
        return private_dir(env, "state") if create and os.geteuid() != 0 else env
    if os.geteuid() == 0:
        return "/run/containerlab"
    runtime_dir = _xdg_runtime_dir()
    if runtime_dir:
        path = os.path.join(runtime_dir, APP)
    else:  # no usable XDG_RUNTIME_DIR (a container, su, a cron job): a private dir in the temp dir
        import tempfile  # this case only (~4 ms to import)

        path = os.path.join(tempfile.gettempdir(), f"{APP}-{os.geteuid()}")
    return private_dir(path, "state") if create else path


def data_root(create: bool = True) -> str:
    """The image directory; made (0700) and checked unless create is False."""
    env = os.environ.get("CONTAINERLAB_DATA")
    if env:
        return private_dir(env, "image") if create and os.geteuid() != 0 else env
    if os.geteuid() == 0:
        return "/var/lib/containerlab"
    base = os.environ.get("XDG_DATA_HOME")
    if not base or not os.path.isabs(base):
        home = os.path.expanduser("~")
        if not os.path.isabs(home):
            raise PathError("HOME is not set, so there is no place for images: set HOME or CONTAINERLAB_DATA")
        base = os.path.join(home, ".local", "share")
    path = os.path.join(base, APP)
    return private_dir(path, "image") if create else path


def private_io_root() -> str:
    """A 0700 directory of our own for data passed in and out of containers (--python
    --in/--out): what lies below it may be 0777 for a container's --user, yet other users
    of the host can neither read nor plant anything there."""
    return private_dir(os.path.join(state_root(), "io"), "state")
