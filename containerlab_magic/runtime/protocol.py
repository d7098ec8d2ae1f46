"""Messages between an Engine and its shim: JSON over a SOCK_SEQPACKET socket.

SEQPACKET keeps message boundaries, so each send is one message; file
descriptors (a container's output pipes or pty) ride along as SCM_RIGHTS
ancillary data (unix(7)).
"""

from __future__ import annotations

import json
import socket

MAX_MESSAGE = 1 << 20
MAX_FDS = 4


def send(sock: socket.socket, message: dict, fds: list[int] | tuple[int, ...] = ()) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def recv(sock: socket.socket) -> tuple[dict | None, list[int]]:
    """One message and its fds; (None, []) at EOF.  ValueError for a message that is not
    one JSON object (truncated past MAX_MESSAGE, say); its fds are closed then."""
    data, fds, flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS)
    try:
        if not data:
            return None, _closed(fds)
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            raise ValueError(f"a message over {MAX_MESSAGE} bytes or {MAX_FDS} file descriptors")
        message = json.loads(data)
        if not isinstance(message, dict):
            raise ValueError(f"a message must be a JSON object, not {type(message).__name__}")
    except ValueError:
        _closed(fds)
        raise
    return message, fds


def _closed(fds: list[int]) -> list[int]:
    import os

    for fd in fds:
        os.close(fd)
    return []
