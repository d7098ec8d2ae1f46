"""M2, M3: what a container on a lab bridge can reach of the host."""

from __future__ import annotations

import os
import socket
import threading

import pytest
from escape import VAR, lab, run, escape_checks  # noqa: F401 - escape_checks: autouse


@pytest.fixture
def host_service():
    """A TCP service of the host on 0.0.0.0 (as a database or a notebook server would be)."""
    server = socket.create_server(("0.0.0.0", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"HOST-SERVICE\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def _reach(port: int, off: tuple[str, ...], monkeypatch) -> tuple[bytes, str]:
    """From a container on a new network: what the host's service says at the gateway."""
    if off:
        monkeypatch.setenv(VAR, ",".join(off))  # networks are made in this process
    with lab(off) as engine:
        nm = engine.networks()
        name = f"sec{os.getpid()}"
        nm.create(name, internal=True)
        try:
            gateway = nm.inspect(name)["gateway"]
            result = run(engine, ["sh", "-c", f"timeout 3 nc {gateway} {port} </dev/null; echo rc=$?"], network=name)
            ra = run(engine, ["cat", "/proc/sys/net/ipv6/conf/eth0/accept_ra"], network=name).stdout.strip()
        finally:
            nm.remove(name)
    monkeypatch.delenv(VAR, raising=False)
    return result.stdout, ra


def test_a_container_does_not_reach_the_hosts_own_services(host_service, monkeypatch):
    assert _reach(host_service, ("host-filter",), monkeypatch)[0] == b"HOST-SERVICE\nrc=0\n"
    assert _reach(host_service, (), monkeypatch)[0] == b"rc=143\n"  # no answer: killed by timeout


def test_no_router_advertisements_are_accepted(host_service, monkeypatch):
    assert _reach(host_service, (), monkeypatch)[1] in (b"0", b"")  # "" : no IPv6 on this host
