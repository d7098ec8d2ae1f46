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
    """One message and its fds; (None, []) at EOF."""
    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS)
    if not data:
        for fd in fds:
            import os

            os.close(fd)
        return None, []
    return json.loads(data), fds
