"""Published ports: a userspace TCP/UDP proxy driven by the caller's loop.

`-p 8080:80` listens on 127.0.0.1:8080 (and on the network's gateway address,
so other containers reach it too) and relays each connection to the
container's address, port 80.  We chose a userspace proxy over DNAT because
DNAT of loopback traffic needs `route_localnet`, an SNAT rule and the host's
firewall tables; a proxy touches nothing on the host and vanishes with the
process that holds its sockets, even after `kill -9`.

The proxy never blocks and owns no thread.  All its sockets sit in one epoll
selector whose own descriptor, `fileno()`, becomes readable when any of them
is ready: register that one fd in your loop and call `pump()` when it fires.
"""

from __future__ import annotations

import errno
import selectors
import socket
import threading
import time

from ..errors import Conflict

CHUNK = 65536
BUFFER_LIMIT = 256 * 1024
UDP_IDLE_SECONDS = 60.0


class _TcpLink:
    """One relayed connection: client <-> upstream, with a buffer each way."""

    def __init__(self, proxy: "PortProxy", owner: str, client: socket.socket, upstream: socket.socket):
        self.proxy, self.owner = proxy, owner
        self.socks = [client, upstream]
        self.bufs = [bytearray(), bytearray()]  # bufs[i]: read from socks[i], to send to socks[1-i]
        self.eof = [False, False]
        self.shut = [False, False]
        self.connecting = True
        self.registered = [0, 0]
        self.closed = False

    def interest(self) -> None:
        for i, sock in enumerate(self.socks):
            events = 0
            waiting = i == 1 and self.connecting
            if not self.eof[i] and not waiting and len(self.bufs[i]) < BUFFER_LIMIT:
                events |= selectors.EVENT_READ
            if waiting or self.bufs[1 - i]:
                events |= selectors.EVENT_WRITE
            if events == self.registered[i]:
                continue
            if not self.registered[i]:
                self.proxy.sel.register(sock, events, (self, i))
            elif not events:
                self.proxy.sel.unregister(sock)
            else:
                self.proxy.sel.modify(sock, events, (self, i))
            self.registered[i] = events

    def ready(self, i: int, mask: int) -> None:
        try:
            if mask & selectors.EVENT_WRITE:
                self._writable(i)
            if mask & selectors.EVENT_READ and not self.closed:
                self._readable(i)
        except OSError:
            self.close()
            return
        if self.closed:
            return
        for j in (0, 1):  # half-close: pass an EOF on once its data is out
            if self.eof[1 - j] and not self.bufs[1 - j] and not self.shut[j]:
                try:
                    self.socks[j].shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                self.shut[j] = True
        if all(self.shut) and all(self.eof):
            self.close()
        else:
            self.interest()

    def _writable(self, i: int) -> None:
        if i == 1 and self.connecting:
            err = self.socks[1].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, "connect to the container failed")
            self.connecting = False
        buf = self.bufs[1 - i]
        if buf:
            sent = self.socks[i].send(buf)
            del buf[:sent]

    def _readable(self, i: int) -> None:
        data = self.socks[i].recv(CHUNK)
        if data:
            self.bufs[i] += data
        else:
            self.eof[i] = True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for i, sock in enumerate(self.socks):
            if self.registered[i]:
                self.proxy.sel.unregister(sock)
            sock.close()
        self.proxy.links.discard(self)


class _Listener:
    def __init__(self, owner: str, sock: socket.socket, protocol: str, target: tuple[str, int]):
        self.owner, self.sock, self.protocol, self.target = owner, sock, protocol, target
        self.sessions: dict[tuple, list] = {}  # UDP: client address -> [upstream socket, last use]


class PortProxy:
    """Every published port of one process; see the module docstring."""

    def __init__(self) -> None:
        self.sel = selectors.EpollSelector()
        self.listeners: list[_Listener] = []
        self.links: set[_TcpLink] = set()
        self.lock = threading.RLock()  # only for callers that pump on another thread

    def fileno(self) -> int:
        return self.sel.fileno()

    # Publishing -------------------------------------------------------------

    def publish(self, owner: str, protocol: str, host_ip: str, host_port: int, target: tuple[str, int]) -> None:
        """Listen on host_ip:host_port for `owner`; Conflict if the port is taken."""
        kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(socket.AF_INET, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            if protocol == "tcp":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host_ip, host_port))
            if protocol == "tcp":
                sock.listen(128)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise Conflict(
                    f"port {host_ip}:{host_port}/{protocol} is already in use on this host: "
                    f"choose another host port, e.g. -p {host_port + 1}:{target[1]}"
                ) from None
            raise
        listener = _Listener(owner, sock, protocol, target)
        with self.lock:
            self.listeners.append(listener)
            self.sel.register(sock, selectors.EVENT_READ, listener)

    def unpublish(self, owner: str) -> int:
        """Close every listener and connection of `owner`; returns how many listeners."""
        with self.lock:
            mine = [l for l in self.listeners if l.owner == owner]
            for listener in mine:
                for upstream, _ in listener.sessions.values():
                    self.sel.unregister(upstream)
                    upstream.close()
                self.sel.unregister(listener.sock)
                listener.sock.close()
                self.listeners.remove(listener)
            for link in [l for l in self.links if l.owner == owner]:
                link.close()
            return len(mine)

    def published(self) -> list[dict]:
        with self.lock:
            return [{"owner": l.owner, "protocol": l.protocol, "host": l.sock.getsockname(),
                     "target": l.target} for l in self.listeners]

    def close(self) -> None:
        for owner in {l.owner for l in self.listeners}:
            self.unpublish(owner)
        self.sel.close()

    # The loop ---------------------------------------------------------------

    def pump(self, timeout: float = 0.0) -> None:
        """Handle whatever is ready now (or within `timeout` seconds); never blocks longer."""
        events = self.sel.select(timeout)
        with self.lock:
            for key, mask in events:
                if self.sel.get_map().get(key.fd) is not key:
                    continue  # closed by an earlier event of this round
                data = key.data
                if isinstance(data, _Listener):
                    if data.protocol == "tcp":
                        self._accept(data)
                    else:
                        self._datagram(data)
                else:
                    link, side = data
                    if isinstance(link, _TcpLink):
                        link.ready(side, mask)
                    else:
                        self._reply(link, side)
            self._expire_udp()

    def _accept(self, listener: _Listener) -> None:
        while True:
            try:
                client, _ = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. EMFILE: the client will retry
            client.setblocking(False)
            upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
            err = upstream.connect_ex(listener.target)
            if err not in (0, errno.EINPROGRESS):
                client.close()
                upstream.close()
                continue
            link = _TcpLink(self, listener.owner, client, upstream)
            self.links.add(link)
            link.interest()

    def _datagram(self, listener: _Listener) -> None:
        while True:
            try:
                data, client = listener.sock.recvfrom(CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            session = listener.sessions.get(client)
            if session is None:
                upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
                upstream.connect(listener.target)
                session = listener.sessions[client] = [upstream, 0.0]
                self.sel.register(upstream, selectors.EVENT_READ, (listener, client))
            session[1] = time.monotonic()
            try:
                session[0].send(data)
            except OSError:
                pass  # UDP: a lost datagram is the protocol's business

    def _reply(self, listener: _Listener, client: tuple) -> None:
        upstream = listener.sessions[client][0]
        while True:
            try:
                data = upstream.recv(CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            listener.sessions[client][1] = time.monotonic()
            try:
                listener.sock.sendto(data, client)
            except OSError:
                pass

    def _expire_udp(self) -> None:
        now = time.monotonic()
        for listener in self.listeners:
            for client, (upstream, last) in list(listener.sessions.items()):
                if now - last > UDP_IDLE_SECONDS:
                    self.sel.unregister(upstream)
                    upstream.close()
                    del listener.sessions[client]
