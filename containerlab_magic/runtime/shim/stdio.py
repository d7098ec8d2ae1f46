"""A process's standard streams: pipes, or a pty the container opens itself.

The container gets its ends at clone; the caller gets the read ends (and,
interactive, stdin's write end) over the socket (SCM_RIGHTS); a detached
container's read ends are pumped into its log by the shim instead.  Every fd
made here is owned by one Stdio until it is handed on or closed.
"""

from __future__ import annotations

import os
import socket

from ..errors import RuntimeFailure

STDOUT, STDERR = 1, 2
CONSOLE_DEADLINE = 10.0  # seconds PID 1 may take to build its rootfs and send its pty


class Stdio:
    def __init__(self) -> None:
        self.container: tuple[int, int, int] = (-1, -1, -1)  # its stdin, stdout, stderr
        self.child_ends: list[int] = []  # closed here once the child holds them
        self.client: list[int] = []  # handed to the caller (then closed here)
        self.pumps: list[tuple[int, int]] = []  # (fd, stream) read into the log
        self.console_ours = -1  # --tty: our end of the socket PID 1 sends its pty master on
        self.console_theirs = -1

    @classmethod
    def make(cls, spec, devnull: int) -> "Stdio":
        io = cls()
        if spec.tty:  # the container opens its own pty and sends the master (child._open_console)
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            io.console_ours, io.console_theirs = ours.detach(), theirs.detach()
            io.child_ends.append(io.console_theirs)
            io.container = (devnull, devnull, devnull)
            return io
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        io.child_ends += [out_w, err_w]
        stdin = devnull
        if spec.interactive and not spec.detach:
            in_r, in_w = os.pipe2(os.O_CLOEXEC)
            io.child_ends.append(in_r)
            stdin = in_r
            io.client.append(in_w)
        io.container = (stdin, out_w, err_w)
        if spec.detach:
            io.pumps = [(out_r, STDOUT), (err_r, STDERR)]
        else:
            io.client[:0] = [out_r, err_r]
        return io

    @classmethod
    def given(cls, fds: tuple[int, int, int]) -> "Stdio":
        """The caller's own stdin, stdout and stderr (sent with the request): the container
        writes where the caller's streams go, as an OCI runtime's does (copies; ours to close)."""
        io = cls()
        io.container = tuple(os.dup(fd) for fd in fds)
        io.child_ends = list(io.container)
        return io

    @classmethod
    def pipes_for_warm(cls) -> "Stdio":
        """A warm PID 1's pipes: what it runs later decides which the caller gets."""
        io = cls()
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        in_r, in_w = os.pipe2(os.O_CLOEXEC)
        io.container = (in_r, out_w, err_w)
        io.child_ends = [in_r, out_w, err_w]
        io.client = [out_r, err_r, in_w]
        return io

    @classmethod
    def from_spare(cls, pipes: tuple[int, int, int], spec) -> "Stdio":
        """A warm PID 1's pipes (its stdout and stderr readers, stdin's writer)."""
        io = cls()
        out_r, err_r, in_w = pipes
        if spec.detach:
            io.pumps = [(out_r, STDOUT), (err_r, STDERR)]
        else:
            io.client = [out_r, err_r]
        if spec.interactive and not spec.detach:
            io.client.append(in_w)
        else:
            os.close(in_w)
        return io

    def close_child_ends(self) -> None:
        for fd in self.child_ends:
            os.close(fd)
        self.child_ends = []
        self.console_theirs = -1

    def take_pumps(self) -> list[tuple[int, int]]:
        pumps, self.pumps = self.pumps, []
        return pumps

    def take_client(self) -> list[int]:
        client, self.client = self.client, []
        return client

    def receive_console(self, proc) -> None:
        """The pty master the container opened in its own /dev/pts, within a deadline
        (the shim must not hang on a PID 1 that neither sends nor dies)."""
        late = False
        with socket.socket(fileno=self.console_ours) as sock:
            self.console_ours = -1
            sock.settimeout(CONSOLE_DEADLINE)
            try:
                _, fds, _, _ = socket.recv_fds(sock, 16, 1)
            except socket.timeout:
                fds, late = [], True
        if not fds:  # EOF: PID 1 died (its error pipe then has said why)
            error = {} if late else proc.read_error()
            raise RuntimeFailure("cannot give the container a terminal: "
                                 f"{error.get('message', 'it sent none in time')}")
        self.client.append(fds[0])

    def close_all(self) -> None:
        for fd in [*self.child_ends, *self.client, *(fd for fd, _ in self.pumps), self.console_ours]:
            if fd >= 0:
                os.close(fd)
        self.child_ends, self.client, self.pumps = [], [], []
        self.console_ours = self.console_theirs = -1
