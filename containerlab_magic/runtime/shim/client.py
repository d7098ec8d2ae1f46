"""ShimClient: the Engine's side of the socket to its shim.

It starts a private shim (a socketpair; the shim ends with it) or connects to
the daemon (starting it if none listens).  Requests are serialised by a lock.
Replies and events are read by whichever thread is waiting for one
(leader/follower): the waiter reads the socket itself unless another thread
already does, and hands on what is not its own.  No reader thread means no
thread hand-off on the hot path (about 1 ms a message on a busy 2-core host).
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import threading
import time
from collections import OrderedDict
from typing import Callable

from .. import protocol
from ..security import guards
from ..errors import Conflict, HostUnsupported, NotFound, RuntimeFailure, SpecError

ERRORS = {cls.__name__: cls for cls in (SpecError, NotFound, Conflict, RuntimeFailure, HostUnsupported)}
MAX_UNCLAIMED = 1024  # events nobody waits for (a dropped Container) kept at most
DAEMON_LINGER = 60.0  # seconds an idle daemon waits for the next command (CONTAINERLAB_DAEMON_LINGER)
MAX_LINGER = 86400.0


def daemon_linger() -> float:
    """How long the daemon shim stays when it has nothing to serve: long enough for an
    interactive user's next command to find it running (and its spares warm)."""
    text = os.environ.get("CONTAINERLAB_DAEMON_LINGER", "").strip()
    if not text:
        return DAEMON_LINGER
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_LINGER:  # (nan fails both comparisons)
        raise SpecError(f"invalid CONTAINERLAB_DAEMON_LINGER={text!r}: give seconds from 0 to "
                        f"{MAX_LINGER:g}, e.g. 60 (how long the idle daemon shim waits for the next command)")
    return seconds


class ShimClient:
    def __init__(self, state_root: str, data_root: str, *, daemon: bool, prewarm: bool,
                 command: Callable[..., list[str]] | None = None) -> None:
        self.state_root, self.data_root = state_root, data_root
        self._command = command or self.command
        self.daemon, self.prewarm = daemon, prewarm
        self.sock: socket.socket | None = None
        self._hello: int | None = None  # the hello's request number, until its reply is read
        self._shim_pid: int | None = None
        self._log_path: str | None = None
        self._send_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._cond = threading.Condition()
        self._replies: dict[int, tuple[dict, list[int]]] = {}
        self._abandoned: set[int] = set()  # requests whose caller was interrupted
        self._events: OrderedDict[tuple, dict] = OrderedDict()  # (kind, id, exec_id) -> event
        self._next_req = 0
        self.closed = False
        self._reading = False  # a thread is reading the socket (see _await)
        self._proc = None  # the subprocess.Popen of a shim we started

    def start(self, greet: bool = True) -> None:
        """Start or connect to the shim; greet: and wait for its hello (it is up)."""
        with self._start_lock:
            if self.sock is None:
                if self.closed:
                    raise RuntimeFailure("the engine is closed: start a new Engine")
                self.sock = self._connect_daemon() if self.daemon else self._start_private()
                # Its reply is read when first needed, usually with the next request's: a
                # CLI call pays no round trip (two context switches) of its own for it.
                self._hello = self._send({"op": "hello"})
        if greet:
            self._greet()

    def _greet(self) -> None:
        """The hello's answer: the shim's pid and log."""
        with self._start_lock:
            if self._hello is not None:
                hello = self._reply(self._hello)[0]
                self._hello = None
                self._shim_pid, self._log_path = hello["pid"], hello.get("log")

    @property
    def shim_pid(self) -> int | None:
        self._greet()
        return self._shim_pid

    @property
    def log_path(self) -> str | None:
        self._greet()
        return self._log_path

    def command(self, *extra: str) -> list[str]:
        """How the shim is started (an Engine subclass may wrap it: benchmarks/_profile.py):
        isolated, see SHIM_BOOT."""
        if guards.disabled("shim-isolation"):  # the escape suite's "before" (tests/security)
            return [sys.executable, "-m", "containerlab_magic.runtime.shim", "--state", self.state_root,
                    "--data", self.data_root, *extra]
        return [sys.executable, "-I", "-c", SHIM_BOOT, PACKAGE_ROOT, "--state", self.state_root,
                "--data", self.data_root, *extra]

    def _start_private(self) -> socket.socket:
        import subprocess  # only to start a shim: not on the path of a call to a running daemon

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            extra = ("--prewarm",) if self.prewarm else ()
            self._proc = subprocess.Popen(
                self._command("--fd", str(theirs.fileno()), *extra), pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True, env=_shim_env(),
                cwd=_shim_cwd())
        return ours

    def _connect_daemon(self) -> socket.socket:
        path = os.path.join(self.state_root, "shim.sock")
        extra = ("--linger", f"{daemon_linger():g}") + (("--prewarm",) if self.prewarm else ())
        for attempt in range(20):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                sock.connect(path)
                return sock
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
            import subprocess

            # The daemon outlives this process: it must not hold our stdout/stderr open.
            log_fd = os.open(os.path.join(self.state_root, "shim.log"),
                             os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            os.fchmod(log_fd, 0o600)  # one made before, world-readable
            with os.fdopen(log_fd, "ab") as log:
                proc = subprocess.Popen(self._command("--daemon", *extra), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=log, start_new_session=True,
                                        env=_shim_env(), cwd=_shim_cwd())
            proc.stdout.readline()  # "ready" (or "busy": another one won the race)
            proc.stdout.close()
            proc.wait()
            time.sleep(0.01 * attempt)
        raise RuntimeFailure(f"cannot reach the containerlab-magic daemon at {path}: see `containerlab-magic doctor`")

    # ------------------------------------------------------------ messages

    def _dispatch(self, message: dict | None, fds: list[int]) -> None:
        """Under self._cond: file one message from the shim where its waiter looks."""
        if message is None:
            self.closed = True
        elif message.get("event"):
            self._events[(message["event"], message["id"], message.get("exec_id"))] = message
            while len(self._events) > MAX_UNCLAIMED:  # nobody will ask for the oldest
                self._events.popitem(last=False)
        elif message.get("req") in self._abandoned:
            self._abandoned.discard(message["req"])
            _drop_reply(message, fds)
        else:
            self._replies[message["req"]] = (message, fds)

    def _await(self, ready: Callable[[], bool], timeout: float | None = None, block: bool = True) -> bool:
        """Until ready() (checked under self._cond) holds, the shim is gone, or time is up."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                while True:
                    if ready():
                        return True
                    if self.closed:
                        return False
                    left = None if deadline is None else deadline - time.monotonic()
                    if (left is not None and left <= 0) and block:
                        return False
                    if not self._reading:
                        self._reading = True
                        break
                    if not block:
                        return False
                    self._cond.wait(left)
            message, fds, got = None, [], False
            try:
                if not block:
                    left = 0.0
                if left is None or select.select([self.sock], [], [], left)[0]:
                    message, fds = protocol.recv(self.sock)
                    got = True
            except OSError:
                got = True  # the socket is gone: message None closes the engine
            finally:
                with self._cond:
                    self._reading = False
                    if got:
                        self._dispatch(message, fds)
                    self._cond.notify_all()
            if not block and not got:
                with self._cond:
                    return ready()

    def request(self, message: dict, fds: list[int] = ()) -> tuple[dict, list[int]]:
        if self.sock is None:
            self.start(greet=False)
        return self._reply(self._send(message, fds))

    def _send(self, message: dict, fds: list[int] = ()) -> int:
        """Send one request; its number, for _reply."""
        with self._send_lock:
            self._next_req += 1
            req = message["req"] = self._next_req
            if self.closed:
                raise RuntimeFailure("the engine is closed (its shim is gone): start a new Engine")
            try:
                protocol.send(self.sock, message, fds)
            except OSError as e:
                raise RuntimeFailure(f"the engine's shim is gone ({e}): start a new Engine") from None
        return req

    def _reply(self, req: int) -> tuple[dict, list[int]]:
        """The reply to request `req`, once it has come (an error reply raised as its error)."""
        try:
            arrived = self._await(lambda: req in self._replies)
        except BaseException:  # interrupted (Ctrl-C): its reply, when it comes, is dropped
            with self._cond:
                if req in self._replies:
                    _drop_reply(*self._replies.pop(req))
                else:
                    self._abandoned.add(req)
            raise
        if not arrived:
            raise RuntimeFailure("the engine's shim exited unexpectedly: start a new Engine")
        with self._cond:
            reply, reply_fds = self._replies.pop(req)
        if not reply.get("ok"):
            for fd in reply_fds:
                os.close(fd)
            raise ERRORS.get(reply.get("kind"), RuntimeFailure)(reply.get("error"))
        return reply, reply_fds

    def event(self, kind: str, cid: str, exec_id: str | None, timeout: float | None = None,
              block: bool = True, keep: bool = False) -> dict | None:
        """The event `kind` ("exit", "explain") of a container or exec, once it has come."""
        key = (kind, cid, exec_id)
        if self.sock is not None:
            self._await(lambda: key in self._events, timeout, block)
        with self._cond:
            if key in self._events:
                return self._events[key] if keep else self._events.pop(key)
        return None

    def close(self) -> None:
        with self._start_lock:
            self.closed = True
        if self.sock is None:
            return
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # the shim closed it first
        self.sock.close()
        self.sock = None
        if self._proc is not None:
            import subprocess

            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def _drop_reply(reply: dict, fds: list[int]) -> None:
    """A reply nobody will read: close its fds, and end the container it started (a
    foreground one, whose caller is gone; a detached one runs on, as asked)."""
    for fd in fds:
        os.close(fd)
    if reply.get("ok") and reply.get("pid") and reply.get("streams") in ("pipes", "pty"):
        try:
            pidfd = os.pidfd_open(reply["pid"])
        except ProcessLookupError:
            return
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.close(pidfd)


# The shim runs as root and outlives the caller: it must import nothing the caller (or a
# container with the caller's directory bound in) can plant (C1).  So it starts isolated
# (`python -I`: no PYTHON* variables, no user site, no script or current directory on
# sys.path), in /, with a fixed environment, and finds this package at the one path
# given: placed after the standard library, so no file there can shadow a stdlib module.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SHIM_BOOT = ("import sys; root = sys.argv.pop(1); "
             "sys.path.insert(next((i for i, p in enumerate(sys.path) if p.endswith(('site-packages', "
             "'dist-packages'))), len(sys.path)), root); "
             "from containerlab_magic.runtime.shim import main; sys.exit(main())")
SHIM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _shim_cwd() -> str | None:
    return None if guards.disabled("shim-isolation") else "/"


def _shim_env() -> dict:
    """The shim's whole environment: a fixed PATH and locale, and our own CONTAINERLAB_* switches."""
    if guards.disabled("shim-isolation"):
        return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))}
    env = {"PATH": SHIM_PATH, "LANG": "C.UTF-8"}
    env.update((k, v) for k, v in os.environ.items() if k.startswith("CONTAINERLAB_"))
    return env
