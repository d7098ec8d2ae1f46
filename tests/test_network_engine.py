"""Networks through the Engine and the CLI, with real containers (busybox).

The lower-level layer has its own tests (test_network.py); these check what a
user sees: names, HTTP between containers, published ports, isolation between
networks, `container:NAME`, shaping, and that nothing is left on the host.
All traffic stays between the host and containers on this machine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import STATE, needs_root, spare_links
from containerlab_magic import display as show
from containerlab_magic.runtime import ContainerSpec, PortMap
from containerlab_magic.runtime.errors import Conflict, ContainerError, HostUnsupported, NotFound, SpecError
from containerlab_magic.runtime.network.manager import mac_for
from containerlab_magic.runtime.network.netlink import sysfs_master
from containerlab_magic.runtime.state import proc_start_time, wait_for

pytestmark = needs_root


def links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines()}


@pytest.fixture
def net(engine, no_leaks):
    """The engine, plus a check that every veth and network the test made is gone after it."""
    before = links()
    networks_before = {n["name"] for n in engine.networks().list()}
    made = []
    yield engine, made
    for name in made:
        try:
            engine.rm(name, force=True)
        except NotFound:
            pass
    nm = engine.networks()
    for network in nm.list():
        if network["name"] not in networks_before:
            nm.remove(network["name"])
    nm.close()
    deadline = time.monotonic() + 10
    while links() - before - spare_links() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = links() - before - spare_links()
    assert left == set(), f"links left behind: {describe_links(left)}; network state: {network_state()}"


def describe_links(names) -> dict:
    """Each link with its alias (which names the container or network it was made for)."""
    found = {}
    for name in sorted(names):
        try:
            with open(f"/sys/class/net/{name}/ifalias") as f:
                found[name] = f.read().strip()
        except OSError:
            found[name] = "gone"
    return found


def start(engine, made, name, script, **kw):
    made.append(name)
    return engine.run(ContainerSpec(["sh", "-c", script], image="busybox", name=name, detach=True, **kw))


def sh(engine, script, **kw):
    return engine.run(ContainerSpec(["sh", "-c", script], image="busybox", **kw)).wait(60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(engine, ref: str, port: int, timeout: float = 15) -> None:
    """Until a socket in container `ref` listens on TCP `port` (its /proc/net/tcp says so)."""
    hexport = f":{port:04X}"
    deadline = time.monotonic() + timeout
    while True:
        r = engine.exec(ref, ["cat", "/proc/net/tcp", "/proc/net/tcp6"]).wait(30)
        rows = [line.split() for line in r.stdout.decode().splitlines()[1:]]
        if any(len(f) > 3 and f[1].endswith(hexport) and f[3] == "0A" for f in rows):  # 0A: LISTEN
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listens on port {port} in {ref} after {timeout} s: {r}")
        time.sleep(0.05)


HTTPD = "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"


def wait_http(url: str, timeout: float = 10) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return urllib.request.urlopen(url, timeout=2).read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_two_containers_talk_by_name(net):
    engine, made = net
    start(engine, made, "web", HTTPD, network="bridge")
    r = sh(engine, "ping -c1 -W2 web >/dev/null && echo ping-ok; "
                   "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://web/ && break; sleep 0.2; done; "
                   "grep -w web /etc/hosts | cut -f2", network="bridge", name="client")
    assert r.stdout.decode().split() == ["ping-ok", "hello-from-web", "web"], r


def test_host_reaches_a_published_port_and_ps_lists_it(net):
    engine, made = net
    port = free_port()
    start(engine, made, "published", HTTPD, network="bridge", ports=(PortMap.parse(f"{port}:80"),))
    assert wait_http(f"http://127.0.0.1:{port}/") == b"hello-from-published\n"
    row = next(r for r in engine.ps() if r["name"] == "published")
    assert row["ports"] == [f"127.0.0.1:{port}->80/tcp"]
    with pytest.raises(ContainerError) as err:  # the port is taken now
        engine.run(ContainerSpec(["true"], image="busybox", network="bridge", ports=(PortMap.parse(f"{port}:80"),)))
    assert "in use" in str(err.value) and "\n" not in str(err.value)


def test_none_cannot_reach_the_bridge_and_networks_are_apart(net):
    engine, made = net
    nm = engine.networks()
    nm.create("lab-a")
    nm.create("lab-b")
    nm.close()
    start(engine, made, "srv-a", HTTPD, network="lab-a")
    wait_listening(engine, "srv-a", 80)
    ip_a = engine.inspect("srv-a")["ip"]
    same = sh(engine, f"timeout 3 wget -qO- http://{ip_a}/ || echo unreachable", network="lab-a")
    other = sh(engine, f"timeout 3 wget -qO- http://{ip_a}/ 2>/dev/null || echo unreachable", network="lab-b")
    none = sh(engine, f"timeout 3 wget -qO- http://{ip_a}/ 2>/dev/null || echo unreachable")
    assert same.stdout == b"hello-from-srv-a\n"
    assert other.stdout == b"unreachable\n"
    assert none.stdout == b"unreachable\n"


def test_container_mode_shares_the_partners_loopback(net):
    engine, made = net
    start(engine, made, "pod", "echo in-pod > /tmp/i && exec httpd -f -p 127.0.0.1:8080 -h /tmp")
    wait_listening(engine, "pod", 8080)
    r = sh(engine, "wget -qO- http://127.0.0.1:8080/i", network="container:pod")
    assert r.stdout == b"in-pod\n"


def test_net_rate_limits_throughput(net):
    engine, made = net
    start(engine, made, "fast", "dd if=/dev/zero of=/tmp/big bs=1k count=512 2>/dev/null; exec httpd -f -p 80 -h /tmp",
          network="bridge")
    start(engine, made, "slow", "dd if=/dev/zero of=/tmp/big bs=1k count=512 2>/dev/null; exec httpd -f -p 80 -h /tmp",
          network="bridge", net_rate="4mbit")
    wait_listening(engine, "fast", 80)
    wait_listening(engine, "slow", 80)

    def fetch(name: str) -> float:
        t = time.monotonic()
        r = sh(engine, f"wget -qO /dev/null http://{name}/big && echo ok", network="bridge")
        assert r.stdout == b"ok\n", r
        return time.monotonic() - t

    fast, slow = fetch("fast"), fetch("slow")
    # 512 KiB at 4 mbit/s cannot take less than ~1.05 s: the shaped link's own bound (a VM
    # without KVM on a loaded host makes even the unshaped fetch slow, so no ratio to it)
    least = 512 * 1024 * 8 / 4e6
    assert slow >= 0.8 * least and slow > fast, (fast, slow)
    # stats show the link's shaping and what went through eth0 (the file, sent once)
    usage = engine.stats("slow")
    assert usage["network"] == "bridge" and usage["ip"] == engine.inspect("slow")["ip"]
    assert usage["net_shape"]["rate_bps"] == 4_000_000 and show.link_shape(usage["net_shape"]) == "4 Mbit/s"
    assert 512 * 1024 <= usage["net_tx_bytes"] < 4 * 512 * 1024 and usage["net_rx_bytes"] > 0, usage
    assert engine.stats("fast")["net_shape"] is None
    out = subprocess.run([sys.executable, "-m", "containerlab_magic.cli", "stats", "--no-stream", "slow"],
                         capture_output=True, text=True, timeout=60)
    header, row = out.stdout.splitlines()[:2]
    assert "NET I/O" in header and "LINK" in header and row.rstrip().endswith("4 Mbit/s"), out


def test_net_delay_and_loss_and_their_live_update(net):
    """--net-delay and --net-loss (netem): a ping's round trip grows by the delay, a 100%
    loss answers nothing, and `update` changes both on the running container."""
    engine, made = net
    ping = "ping -c 3 -i 0.2 -W 2 $(ip route | awk '/default/ {print $3}') | grep -o 'time=[0-9.]*' | tail -1"
    try:
        box = start(engine, made, "laggy", f"sleep 0.3; {ping}; sleep 30", network="bridge", net_delay="100ms")
    except HostUnsupported as exc:
        assert "netem" in str(exc) and "\n" not in str(exc)
        members = engine.networks().inspect("bridge")["containers"].values()
        assert "laggy" not in {c["name"] for c in members}, "the refused run kept its address"
        pytest.skip(f"this kernel has no netem qdisc: {exc}")
    deadline = time.monotonic() + 20  # three pings 0.2 s apart, each delayed 100 ms
    while "time=" not in (logs := b"".join(data for _, data in engine.logs("laggy")).decode()):
        assert time.monotonic() < deadline, f"no ping round trip in the logs after 20 s: {logs!r}"
        time.sleep(0.05)
    assert float(logs.split("=")[1]) >= 100, logs
    engine.update("laggy", net_delay="1ms", net_loss="100%")
    r = engine.exec(box.id, ["sh", "-c", "ping -c 3 -i 0.2 -W 1 $(ip route | awk '/default/ {print $3}') "
                                         "| grep -o '[0-9]* packets received'"]).wait(30)
    assert r.stdout == b"0 packets received\n", r
    engine.update("laggy", net_loss="0%")
    r = engine.exec(box.id, ["sh", "-c", ping]).wait(30)
    assert float(r.stdout.decode().split("=")[1]) < 50, r


def test_addresses_are_released_and_reused(net):
    engine, made = net
    nm = engine.networks()
    nm.create("tiny", subnet="10.219.7.0/29")  # 5 usable addresses, one is the gateway
    nm.close()
    seen = set()
    for _ in range(6):  # more containers than the subnet holds, one at a time
        r = sh(engine, "ip -4 -o addr show eth0 | awk '{print $4}'", network="tiny")
        seen.add(r.stdout.decode().strip())
    assert seen and all(a.startswith("10.219.7.") for a in seen)
    assert len(seen) <= 4


def network_state() -> dict:
    with open(os.path.join(STATE, "networks", "state.json")) as f:
        return json.load(f)


def plugged_spare(network: str, shim_pid: int | None = None) -> tuple[str, str] | None:
    """(spare id, veth) of a warm spare some shim keeps plugged into `network`'s bridge."""
    st = network_state()
    bridge = st["networks"].get(network, {}).get("bridge")
    for cid, spare in st.get("spares", {}).items():
        if spare["network"] != network or sysfs_master(spare["veth"]) != bridge:
            continue
        try:
            with open(os.path.join(STATE, "containers", cid, "state.json")) as f:
                owner = json.load(f)
        except OSError:
            continue
        if owner.get("status") == "spare" and shim_pid in (None, owner.get("shim_pid")):
            return cid, spare["veth"]
    return None


def wait_for_spare(network: str, shim_pid: int | None = None) -> tuple[str, str]:
    found: list = []
    assert wait_for(lambda: found.append(plugged_spare(network, shim_pid)) or found[-1], 10), \
        f"no warm spare was plugged into {network}"
    return found[-1]


def test_a_warm_spare_on_a_bridge_is_claimed_with_its_own_address(net):
    """The engine keeps a container of the last kinds run ready, its veth already in the
    bridge but with no address or name: a spare is no member of the network until a
    run claims it, which then gets an address, the MAC made from it and a route."""
    engine, made = net
    sh(engine, "true", network="bridge")  # a bridge run: the engine now keeps one warm
    spare, veth = wait_for_spare("bridge", engine.shim_pid)
    described = engine.networks().inspect("bridge")["containers"]
    assert spare not in described and veth not in json.dumps(described)
    box = engine.run(ContainerSpec(["sh", "-c", "cat /sys/class/net/eth0/address; ip -4 -o addr show eth0 | "
                                          "awk '{print $4}'; ip route | grep default; grep -w claimed /etc/hosts | grep -v ^127"],
                                   image="busybox", network="bridge", name="claimed"))
    r = box.wait(30)
    assert box.id == spare, "the run did not use the warm spare"
    mac, address, route, hosts = r.stdout.decode().splitlines()
    ip = address.split("/")[0]
    assert mac == mac_for(ip) and address.endswith("/24")
    assert route.split()[:3] == ["default", "via", engine.networks().inspect("bridge")["gateway"]]
    assert hosts.split() == [ip, "claimed"]
    assert spare not in network_state()["spares"]


def test_network_rm_unplugs_a_warm_spare_and_the_next_run_starts_cold(net):
    engine, made = net
    nm = engine.networks()
    nm.create("sparenet", subnet="10.219.11.0/24")
    sh(engine, "true", network="sparenet")
    spare, veth = wait_for_spare("sparenet", engine.shim_pid)
    nm.remove("sparenet")  # a spare is no member: it does not hold the network
    assert not os.path.exists(f"/sys/class/net/{veth}"), "network rm left the spare's veth"
    assert spare not in network_state()["spares"]
    nm.create("sparenet", subnet="10.219.12.0/24")
    nm.close()
    box = engine.run(ContainerSpec(["sh", "-c", "ip -4 -o addr show eth0 | awk '{print $4}'"],
                                   image="busybox", network="sparenet"))
    r = box.wait(30)
    assert box.id != spare
    assert r.exit_code == 0 and r.stdout.decode().startswith("10.219.12."), r


@pytest.mark.parametrize("make,kind,words", [
    (lambda: ContainerSpec(["true"], image="busybox", network="nosuchnet"), NotFound, "nosuchnet"),
    (lambda: ContainerSpec(["true"], image="busybox", ports=(PortMap.parse("8080:80"),)), SpecError, "needs a network"),
    (lambda: ContainerSpec(["true"], image="busybox", network="bridge", net_rate="fast"), SpecError, "--net-rate"),
    (lambda: ContainerSpec(["true"], image="busybox", network="container:ghost"), NotFound, "ghost"),
])
def test_bad_network_input_is_one_line(net, make, kind, words):
    engine, _ = net
    with pytest.raises(kind) as err:
        engine.run(make())
    assert words in str(err.value) and "\n" not in str(err.value)


def test_bad_subnets(net):
    engine, _ = net
    nm = engine.networks()
    try:
        with pytest.raises(SpecError):
            nm.create("badcidr", subnet="10.300.0.0/24")
        nm.create("first", subnet="10.219.9.0/24")
        with pytest.raises(Conflict):
            nm.create("overlap", subnet="10.219.9.128/25")
    finally:
        nm.close()


def test_gc_after_kill_9_of_engine_and_shim_removes_veths(net):
    engine, made = net
    code = ("import sys\nfrom containerlab_magic.runtime import Engine, ContainerSpec\n"
            "e = Engine()\nb = e.run(ContainerSpec(['sleep', '300'], image='busybox', name='netorphan', "
            "network='bridge', detach=True))\nprint(b.pid, e.shim_pid, flush=True)\nimport time; time.sleep(300)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid, shim = map(int, proc.stdout.readline().split())
    spare, veth = wait_for_spare("bridge", shim)  # its engine keeps a bridge container warm too
    os.kill(shim, 9)
    proc.kill()
    proc.wait()
    assert wait_for(lambda: proc_start_time(shim) is None, 10), "the shim did not die"
    assert engine.inspect("netorphan")["status"] == "running"
    removed = engine.gc()
    assert any("netorphan" in item for item in removed), removed
    assert "netorphan" not in {c.get("name") for c in engine.networks().inspect("bridge")["containers"].values()}
    assert spare not in network_state()["spares"]
    assert wait_for(lambda: not os.path.exists(f"/sys/class/net/{veth}"), 10), "the spare's veth outlived gc"
