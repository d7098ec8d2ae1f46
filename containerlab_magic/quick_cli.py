"""`containerlab-magic`'s entry point: a `run` goes straight to a running daemon shim.

The full CLI (cli.py) imports its parser, the spec and the Engine before it
sends one request: about 30 ms of a 60 ms `containerlab-magic run busybox true`
here, where `crun run` takes 15 ms.  When the daemon shim is already up (it
lingers 60 s after a command), this module sends it the argv, the working
directory and the environment with nothing but the standard library's socket,
json and select; the daemon parses them with the CLI's own parser
(runtime/shim/quick.py) and starts the container, and this process copies the
container's output and exits with its status, as cli.attach does.

Everything else is the full CLI: other verbs, no daemon running yet (it starts
one), and whatever the daemon declines (a usage error or --help, -t/-i,
--explain, an image to pull), so every message a user sees is the full CLI's.
CONTAINERLAB_QUICK=0 turns the quick path off.
"""

from __future__ import annotations

import os
import sys

PROG = "containerlab-magic"  # (parsers.PROG: importing it would cost what this module saves)
MAX_MESSAGE = 1 << 20  # (runtime/protocol.py)
MAX_FDS = 4


def main() -> int:
    argv = sys.argv[1:]
    if argv[:1] == ["run"] and os.environ.get("CONTAINERLAB_QUICK", "1") != "0":
        code = _quick(argv[1:])
        if code is not None:
            return code
    from .cli import main as full

    return full()


# ---------------------------------------------------------------- the wire
# The socket and json modules import enum and re (about 5 ms, a fifth of this whole
# process in a virtual environment); their C halves, which they wrap, do not.

def _state_root() -> str:
    state = os.environ.get("CONTAINERLAB_STATE")
    if state:
        return state
    if os.geteuid() == 0:
        return "/run/containerlab"
    from .runtime.paths import state_root  # (XDG_RUNTIME_DIR, TMPDIR: its rules)

    return state_root(create=False)


def _connect():
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    try:
        sock.connect(os.path.join(_state_root(), "shim.sock"))
    except OSError:  # none listens (or the state directory is not there yet): the full CLI starts it
        sock.close()
        return None
    return sock


def _recv(sock) -> tuple[dict | None, list[int]]:
    """One message and the fds that came with it (socket.recv_fds and json.loads)."""
    import _socket

    data, ancillary, _flags, _addr = sock.recvmsg(MAX_MESSAGE, _socket.CMSG_LEN(MAX_FDS * 4))
    fds = []
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += [int.from_bytes(payload[i:i + 4], sys.byteorder, signed=True)
                    for i in range(0, len(payload) - len(payload) % 4, 4)]
    return (_decode(data.decode()) if data else None), fds


def _encode(value) -> str:
    """JSON of the request's types: str, int, bool, None, lists and str-keyed dicts."""
    try:
        from _json import encode_basestring_ascii as quote
    except ImportError:  # an interpreter without the C accelerator
        import json

        return json.dumps(value)
    if isinstance(value, str):
        return quote(value)
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{quote(k)}:{_encode(v)}" for k, v in value.items()) + "}"
    return "[" + ",".join(_encode(v) for v in value) + "]"


class _Strict:
    """What the C scanner reads off a json.JSONDecoder: plain JSON, nothing hooked."""

    strict, object_hook, object_pairs_hook, memo = True, None, None, {}
    parse_float, parse_int = float, int

    @staticmethod
    def parse_constant(name: str):
        raise ValueError(f"not JSON: {name}")


def _decode(text: str):
    try:
        from _json import make_scanner
    except ImportError:
        import json

        return json.loads(text)
    value, end = make_scanner(_Strict())(text, 0)
    if text[end:].strip():
        raise ValueError("trailing data after the JSON value")
    return value


def _quick(argv: list[str]) -> int | None:
    """The run through the daemon; None when it is not up or declines."""
    sock = _connect()
    if sock is None:
        return None
    try:
        request = {"op": "cli-run", "req": 1, "argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}
        sock.send(_encode(request).encode())
        reply, fds = _recv(sock)
        reply = reply or {}
        if not reply or reply.get("declined") or _unknown_request(reply):
            for fd in fds:
                os.close(fd)
            return None
        if not reply.get("ok"):
            for fd in fds:
                os.close(fd)
            print(f"{PROG}: {reply.get('error')}", file=sys.stderr)
            return 125
        for line in reply.get("warnings") or ():
            print(line, file=sys.stderr)
        if reply.get("streams") == "none":  # detached: its output goes to its log
            print(reply["id"])
            return 0
        return _Attached(sock, reply, fds).run()
    except (OSError, ValueError):  # the daemon went away mid-call: say so as the full CLI would
        print(f"{PROG}: the daemon shim closed the connection; see `{PROG} doctor`", file=sys.stderr)
        return 125
    finally:
        sock.close()


def _unknown_request(reply: dict) -> bool:
    """A daemon started by an older version of the lab, which has no quick path."""
    return not reply.get("ok") and str(reply.get("error", "")).startswith("unknown request")


class _Attached:
    """A foreground container's output copied to ours until it ends (cli.attach's work)."""

    def __init__(self, sock, reply: dict, fds: list[int]) -> None:
        self.sock, self.id, self.name = sock, reply["id"], reply["name"]
        self.streams = {fd: target for fd, target in zip(fds, (1, 2))}
        for fd in fds[2:]:
            os.close(fd)
        self.event: dict | None = None
        self.interrupted = False

    def run(self) -> int:
        import select

        poll = select.poll()
        for fd in self.streams:
            poll.register(fd, select.POLLIN)
        poll.register(self.sock, select.POLLIN)
        try:
            while self.streams or self.event is None:
                try:
                    for fd, _ in poll.poll():
                        if fd == self.sock.fileno():
                            if not self._on_message():
                                poll.unregister(self.sock)
                        elif not self._copy(fd):
                            poll.unregister(fd)
                except KeyboardInterrupt:
                    self._on_interrupt()
        except BrokenPipeError:  # our reader went away (`| head`): the full CLI's status
            return 0
        finally:
            for fd in self.streams:
                os.close(fd)
        event = self.event or {}
        if event.get("say"):
            print(event["say"], file=sys.stderr)
        code = int(event.get("exit_code", 125))
        return 130 if self.interrupted and event.get("signal") else code

    def _copy(self, fd: int) -> bool:
        data = os.read(fd, 65536)
        if not data:
            os.close(fd)
            del self.streams[fd]
            return False
        target = self.streams[fd]
        while data:
            data = data[os.write(target, data):]
        return True

    def _on_message(self) -> bool:
        data = self.sock.recv(MAX_MESSAGE)
        if not data:  # the daemon ended without an exit event
            self.event = self.event or {"exit_code": 125, "say": f"{PROG}: the daemon shim exited; "
                                        f"the container was stopped"}
            return False
        message = _decode(data.decode())
        if message.get("event") == "exit" and message.get("id") == self.id and not message.get("exec_id"):
            self.event = message
        return True

    def _on_interrupt(self) -> None:
        """Ctrl-C stops the container (3 s grace), a second one kills it: cli.attach's rule."""
        import signal
        import threading

        from .runtime.engine import Engine

        self.interrupted = True
        print(f"\n{PROG}: stopping {self.name} (Ctrl-C again to kill)", file=sys.stderr)
        signal.signal(signal.SIGINT, lambda *_: _kill_quietly(self.id))

        def stop() -> None:
            try:
                Engine(daemon=True).stop(self.id, grace=3)
            except Exception:  # noqa: BLE001 - it ended meanwhile: its exit event comes anyway
                pass

        threading.Thread(target=stop, daemon=True).start()


def _kill_quietly(cid: str) -> None:
    from .runtime.engine import Engine

    try:
        Engine(daemon=True).kill(cid)
    except Exception:  # noqa: BLE001 - it ended meanwhile
        pass


if __name__ == "__main__":
    sys.exit(main())
