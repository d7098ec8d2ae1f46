"""Container networks on the real kernel (root): bridges, veths, names, ports, shaping.

Until the engine lands, a "container" here is a process in fresh network and
mount namespaces (`unshare --net --mount`), with its own /etc/hosts bind-mounted
from a host file, exactly as the engine will hand them to NetworkManager.
Commands run inside with `nsenter`.  Every test ends by checking that nothing
it made (links, addresses, listeners, processes, records) is left behind.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from containerlab_magic.runtime.errors import Conflict, HostUnsupported, NotFound, RuntimeFailure, SpecError
from containerlab_magic.runtime.network import NetworkManager, parse_shape, parse_subnet
from containerlab_magic.runtime.network import hosts as hostsfile
from containerlab_magic.runtime.spec import PortMap

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and bridges need root")
BUSYBOX = shutil.which("busybox")
needs_busybox = pytest.mark.skipif(BUSYBOX is None, reason="busybox is missing: apt-get install busybox-static")


# --- stand-in containers -----------------------------------------------------

class Ctr:
    """A process in its own network + mount namespaces, with a private /etc/hosts."""

    def __init__(self, name: str, tmp_path, share_net_of: "Ctr | None" = None):
        self.name = name
        self.id = f"{name}-{os.urandom(4).hex()}"
        self.hosts_file = str(tmp_path / f"{self.id}.hosts")
        with open(self.hosts_file, "w") as f:
            f.write(f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n")
        script = f"mount --bind {self.hosts_file} /etc/hosts && echo ready && exec sleep 600"
        if share_net_of is None:
            argv = ["unshare", "--net", "--mount", "sh", "-c", script]
        else:  # container:NAME: same netns as the partner, own mount ns
            argv = ["nsenter", "-t", str(share_net_of.pid), "-n", "unshare", "--mount", "sh", "-c", script]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"
        self.pid = self.proc.pid
        self.children: list[subprocess.Popen] = []

    def run(self, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess:
        return subprocess.run(["nsenter", "-t", str(self.pid), "-n", "-m", "--", *argv],
                              capture_output=True, text=True, timeout=timeout)

    def spawn(self, *argv: str) -> subprocess.Popen:
        child = subprocess.Popen(["nsenter", "-t", str(self.pid), "-n", "-m", "--", *argv],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.children.append(child)
        return child

    def kill(self) -> None:
        for child in self.children + [self.proc]:
            if child.poll() is None:
                child.kill()  # by PID: processes this test started
            child.wait()
            if child.stdout:
                child.stdout.close()
            if child.stderr:
                child.stderr.close()


def ip_cmd(*argv: str) -> str:
    return subprocess.run(["ip", *argv], capture_output=True, text=True, check=True).stdout


def _aliases() -> dict[str, str]:
    found = {}
    for name in os.listdir("/sys/class/net"):
        try:
            with open(f"/sys/class/net/{name}/ifalias") as f:
                found[name] = f.read().strip()
        except OSError:
            pass
    return found


def host_snapshot(tag: str) -> dict:
    """What one state root holds on the host: the links whose alias carries its tag
    (NetworkState.tag) or that have no alias at all (one made but not yet named), their
    IPv4 addresses, the named network namespaces.  Links of other state roots are left
    out: other test runs on this host add and remove theirs meanwhile."""
    links = {name for name, alias in _aliases().items() if f":{tag}:" in alias or not alias}
    addrs = {line for line in ip_cmd("-o", "-4", "addr").splitlines() if line.split()[1] in links}
    return {"links": links, "addrs": addrs,
            "netns": set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()}


@pytest.fixture
def lab(tmp_path):
    """A NetworkManager with a proxy pump thread; asserts nothing leaks."""
    nm = NetworkManager(str(tmp_path / "state"))
    before = host_snapshot(nm.state.tag)
    stop = threading.Event()
    pump = threading.Thread(target=lambda: [nm.proxy.pump(0.02) for _ in iter(stop.is_set, True)], daemon=True)
    pump.start()
    made: list[Ctr] = []

    def container(name: str, share_net_of: Ctr | None = None) -> Ctr:
        ctr = Ctr(name, tmp_path, share_net_of)
        made.append(ctr)
        return ctr

    nm.container = container
    nm.tmp_path = tmp_path
    yield nm
    for ctr in made:
        ctr.kill()
    removed = nm.gc(set())
    stop.set()
    pump.join()
    leftovers = {"published": nm.proxy.published(), "containers": nm.list() and
                 [c for n in nm.list() for c in n["containers"]]}
    for network in nm.list():
        nm.remove(network["name"])
    after = host_snapshot(nm.state.tag)
    nm.close()
    assert removed["links"] == [], f"gc found orphan links: {removed['links']}"
    assert leftovers == {"published": [], "containers": []}
    assert after["links"] == before["links"], f"links leaked: {after['links'] ^ before['links']}"
    assert after["addrs"] == before["addrs"], f"addresses leaked: {after['addrs'] ^ before['addrs']}"
    assert after["netns"] == before["netns"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text
    return text


def serve_http(ctr: Ctr, tmp_path, body: str) -> None:
    docroot = tmp_path / f"www-{ctr.id}"
    docroot.mkdir()
    (docroot / "index.html").write_text(body)
    ctr.spawn(BUSYBOX, "httpd", "-f", "-p", "80", "-h", str(docroot))
    deadline = time.monotonic() + 15  # until it listens
    while time.monotonic() < deadline:
        if ":0050 " in ctr.run("cat", "/proc/net/tcp", "/proc/net/tcp6").stdout:
            return
        time.sleep(0.01)
    raise AssertionError("httpd did not listen on port 80 within 15 s")


def wget(ctr: Ctr, url: str) -> subprocess.CompletedProcess:
    return ctr.run(BUSYBOX, "wget", "-q", "-O", "-", url)


def ping(ctr: Ctr, target: str) -> bool:
    return ctr.run(BUSYBOX, "ping", "-c", "1", "-W", "2", target).returncode == 0


# --- unit tests (no root) ----------------------------------------------------

def test_parse_subnet_and_shape_errors_are_one_line():
    assert str(parse_subnet("10.213.7.0/24")) == "10.213.7.0/24"
    for bad in ("10.213.7.1/24", "banana", "10.0.0.0/33", "8.8.8.0/24", "fd00::/64", "10.0.0.0/30/1"):
        with pytest.raises(SpecError) as err:
            parse_subnet(bad)
        one_line(err.value)
    assert "10.213.7.0/24" in str(pytest.raises(SpecError, parse_subnet, "10.213.7.1/24").value)
    shape = parse_shape("1.5mbit", "50ms", "1%")
    assert (shape.rate_bps, shape.delay_us, shape.loss_pct) == (1_500_000, 50_000, 1.0)
    for args in (("fast", None, None), (None, "50", None), (None, None, "150%")):
        with pytest.raises(SpecError) as err:
            parse_shape(*args)
        one_line(err.value)


def test_hosts_block_is_rewritten_in_place(tmp_path):
    path = tmp_path / "hosts"
    path.write_text("127.0.0.1\tlocalhost\n127.0.1.1\tweb\n")
    inode = path.stat().st_ino
    assert hostsfile.rewrite(str(path), hostsfile.render_block("n", [("10.0.0.2", "web"), ("10.0.0.3", "db")]))
    assert hostsfile.rewrite(str(path), hostsfile.render_block("n", [("10.0.0.2", "web")]))
    text = path.read_text()
    assert path.stat().st_ino == inode
    assert text.startswith("127.0.0.1\tlocalhost\n127.0.1.1\tweb\n# containerlab network n")
    assert "10.0.0.2\tweb" in text and "db" not in text
    assert hostsfile.rewrite(str(path), "")
    assert path.read_text() == "127.0.0.1\tlocalhost\n127.0.1.1\tweb\n"
    assert not hostsfile.rewrite(str(tmp_path / "gone"), "")


# --- real kernel -------------------------------------------------------------

@needs_root
@needs_busybox
def test_two_containers_talk_by_name(lab):
    lab.create("pair")
    web, client = lab.container("web"), lab.container("client")
    a = lab.attach(web.id, "web", web.pid, "pair", hosts_file=web.hosts_file)
    b = lab.attach(client.id, "client", client.pid, "pair", hosts_file=client.hosts_file)
    assert a["network"] == b["network"] == "pair" and a["ip"] != b["ip"]
    assert ipaddress.ip_address(a["ip"]) in ipaddress.ip_network(lab.inspect("pair")["subnet"])
    # the first container's hosts file learnt about the second one
    assert f"{b['ip']}\tclient" in open(web.hosts_file).read()
    assert ping(client, "web") and ping(web, "client")
    serve_http(web, lab.tmp_path, "hello from web\n")
    got = wget(client, "http://web/index.html")
    assert got.stdout == "hello from web\n", got.stderr
    # inside: eth0 with the bridge's MTU, lo up, default route via the gateway
    assert f"default via {a['gateway']} dev eth0" in web.run("ip", "route").stdout
    eth0 = web.run("ip", "link", "show", "eth0").stdout
    assert "mtu 1500" in eth0 and f"link/ether {a['mac']}" in eth0
    assert "UP" in web.run("ip", "-br", "link", "show", "lo").stdout
    lab.detach(client.id)
    assert "client" not in open(web.hosts_file).read().split("# containerlab")[1]
    assert "containerlab network" not in open(client.hosts_file).read()
    lab.detach(client.id)  # idempotent


@needs_root
@needs_busybox
def test_published_port_reached_from_host_and_other_container(lab):
    port = free_port()
    web, client = lab.container("web"), lab.container("client")
    a = lab.attach(web.id, "web", web.pid, "bridge", ports=[PortMap(port, 80)])
    lab.attach(client.id, "client", client.pid, "bridge")
    serve_http(web, lab.tmp_path, "published\n")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5) as reply:
        assert reply.read() == b"published\n"
    assert wget(client, f"http://{a['gateway']}:{port}/index.html").stdout == "published\n"
    assert lab.attachment(web.id)["ports"] == [
        {"host_ip": "127.0.0.1", "host_port": port, "container_port": 80, "protocol": "tcp"}]
    lab.detach(web.id)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


@needs_root
def test_proxy_runs_in_a_single_threaded_selector_loop(tmp_path):
    """How the shim drives published ports: one fd in its selector, pump() when ready."""
    import selectors
    from containerlab_magic.runtime.network import PortProxy

    with socket.socket() as upstream:
        upstream.bind(("127.0.0.1", 0))
        upstream.listen(1)
        proxy, port = PortProxy(), free_port()
        proxy.publish("ctr", "tcp", "127.0.0.1", port, upstream.getsockname())
        replies = []

        def server():  # stands in for the container's service
            conn, _ = upstream.accept()
            with conn:
                conn.settimeout(5)
                assert conn.recv(100) == b"hello"
                conn.sendall(b"world")

        def client():
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                c.sendall(b"hello")
                replies.append(c.recv(100))

        threads = [threading.Thread(target=server), threading.Thread(target=client)]
        for t in threads:
            t.start()
        loop = selectors.DefaultSelector()
        loop.register(proxy.fileno(), selectors.EVENT_READ)
        deadline = time.monotonic() + 5
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            for _ in loop.select(0.05):
                proxy.pump()
        for t in threads:
            t.join()
        loop.close()
        assert replies == [b"world"]
        assert proxy.unpublish("ctr") == 1 and proxy.published() == []
        proxy.close()


@needs_root
def test_published_udp_port(lab):
    port = free_port()
    echo = lab.container("echo")
    lab.attach(echo.id, "echo", echo.pid, "bridge", ports=[PortMap(port, 7, "udp")])
    server = echo.spawn(sys.executable, "-c",
                        "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 7));"
                        "print('up', flush=True)\nwhile True:\n d, a = s.recvfrom(100); s.sendto(d.upper(), a)")
    assert server.stdout.readline().strip() == "up"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(b"ping", ("127.0.0.1", port))
        assert s.recvfrom(100)[0] == b"PING"


@needs_root
@needs_busybox
def test_none_container_cannot_reach_the_bridge(lab):
    on_bridge, loner = lab.container("web"), lab.container("loner")
    a = lab.attach(on_bridge.id, "web", on_bridge.pid, "bridge")
    lab.loopback(loner.pid)
    assert "UP" in loner.run("ip", "-br", "link", "show", "lo").stdout
    assert loner.run("ip", "route").stdout.strip() == ""
    assert not ping(loner, a["gateway"]) and not ping(loner, a["ip"])
    assert ping(loner, "127.0.0.1")


@needs_root
@needs_busybox
def test_two_networks_are_isolated(lab):
    red_net, blue_net = lab.create("red"), lab.create("blue")
    assert not ipaddress.ip_network(red_net["subnet"]).overlaps(ipaddress.ip_network(blue_net["subnet"]))
    red, blue = lab.container("red"), lab.container("blue")
    r = lab.attach(red.id, "red", red.pid, "red")
    b = lab.attach(blue.id, "blue", blue.pid, "blue")
    assert ping(red, r["gateway"])
    assert not ping(red, b["ip"]) and not ping(blue, r["ip"])
    # what makes it so whatever the host's ip_forward: no forwarding out of our bridges
    for net in (red_net, blue_net):
        assert open(f"/proc/sys/net/ipv4/conf/{net['bridge']}/forwarding").read().strip() == "0"


@needs_root
@needs_busybox
def test_internal_network_has_no_route_beyond_its_bridge(lab):
    inner_net = lab.create("inner", internal=True)
    outer_net = lab.create("outer")
    inner, outer = lab.container("inner"), lab.container("outer")
    lab.attach(inner.id, "inner", inner.pid, "inner")
    lab.attach(outer.id, "outer", outer.pid, "outer")
    assert "default" not in inner.run("ip", "route").stdout
    assert ping(inner, inner_net["gateway"])          # the bridge itself: yes
    assert not ping(inner, outer_net["gateway"])      # any other host address: no route
    assert "unreachable" in inner.run(BUSYBOX, "ping", "-c", "1", "-W", "1", outer_net["gateway"]).stderr
    assert ping(outer, inner_net["gateway"])          # a normal network has a default route to the host


SENDER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 9000)); s.listen(4); print('up', flush=True)
while True:
    c, _ = s.accept(); c.sendall(b'x' * int(sys.argv[1])); c.close()
"""
RECEIVER = """
import socket, sys, time
start = time.perf_counter(); c = socket.create_connection((sys.argv[1], 9000)); n = 0
while True:
    d = c.recv(65536)
    if not d: break
    n += len(d)
print(n, time.perf_counter() - start)
"""


def transfer_seconds(client: Ctr, server_ip: str, size: int) -> float:
    out = client.run(sys.executable, "-c", RECEIVER, server_ip, timeout=60)
    received, seconds = out.stdout.split()
    assert int(received) == size, out.stderr
    return float(seconds)


@needs_root
def test_net_rate_limits_throughput(lab):
    size = 400_000
    server, client = lab.container("server"), lab.container("client")
    s = lab.attach(server.id, "server", server.pid, "bridge")
    lab.attach(client.id, "client", client.pid, "bridge")
    sender = server.spawn(sys.executable, "-c", SENDER, str(size))
    assert sender.stdout.readline().strip() == "up"
    unshaped = min(transfer_seconds(client, s["ip"], size) for _ in range(3))
    lab.shape(server.id, rate="4mbit")
    shaped = transfer_seconds(client, s["ip"], size)
    assert shaped > 5 * unshaped, (shaped, unshaped)
    assert "tbf" in server.run("tc", "qdisc", "show", "dev", "eth0").stdout
    assert lab.inspect("bridge")["containers"][server.id]["shape"]["rate_bps"] == 4_000_000
    lab.shape(server.id, rate="40mbit")  # a live update replaces the qdisc
    faster = transfer_seconds(client, s["ip"], size)
    assert faster < shaped / 3, (faster, shaped)
    lab.shape(server.id)  # all None: shaping removed
    assert "tbf" not in server.run("tc", "qdisc", "show", "dev", "eth0").stdout


def web_with_netem(lab, **shape) -> tuple:
    """A container "web" on the bridge, shaped with netem (or the test skips, on a kernel
    without it, after checking the refusal is one line): (container, attachment)."""
    web = lab.container("web")
    a = lab.attach(web.id, "web", web.pid, "bridge")
    try:
        lab.shape(web.id, **shape)
    except HostUnsupported as exc:
        one_line(exc)
        pytest.skip(f"this kernel has no netem qdisc: {exc}")
    return web, a


@needs_root
@needs_busybox
def test_net_delay_needs_netem(lab):
    _, a = web_with_netem(lab, delay="100ms")
    out = subprocess.run([BUSYBOX, "ping", "-c", "1", a["ip"]], capture_output=True, text=True).stdout
    rtt = float(out.split("time=")[1].split()[0])
    assert rtt >= 100


def pings_answered(ip: str, count: int) -> int:
    out = subprocess.run([BUSYBOX, "ping", "-c", str(count), "-i", "0.02", "-W", "1", ip],
                         capture_output=True, text=True).stdout
    return int(re.search(r"(\d+) packets received", out).group(1))


def pin_neighbours(pid: int, attachment: dict) -> None:
    """Both ends' ARP entries made permanent (on the lab's own bridge and inside the
    container), so a lossy link loses pings, not the ARP replies that the pings need: after
    100% loss both entries have failed, and a ping into a failed entry is an error."""
    ip, gateway = attachment["ip"], attachment["gateway"]
    dev = subprocess.run(["ip", "-o", "route", "get", ip], capture_output=True, text=True,
                         check=True).stdout.split(" dev ")[1].split()[0]
    with open(f"/sys/class/net/{dev}/address") as f:
        bridge_mac = f.read().strip()
    subprocess.run(["ip", "neigh", "replace", ip, "lladdr", attachment["mac"], "dev", dev, "nud", "permanent"],
                   check=True)
    subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "neigh", "replace", gateway, "lladdr", bridge_mac,
                    "dev", "eth0", "nud", "permanent"], check=True)


@needs_root
@needs_busybox
def test_net_loss_drops_that_share_of_packets(lab):
    web, a = web_with_netem(lab, loss="0%")  # netem, losing nothing yet
    pin_neighbours(web.pid, a)
    lab.shape(web.id, loss="100%")
    assert pings_answered(a["ip"], 5) == 0
    lab.shape(web.id, loss="50%")
    answered = pings_answered(a["ip"], 60)
    assert 5 <= answered <= 55, answered  # outside this only once in 10^10 runs
    lab.shape(web.id)  # all None: shaping removed
    assert pings_answered(a["ip"], 5) == 5


@needs_root
def test_addresses_are_reused_after_removal_never_shared(lab):
    lab.create("pool", subnet="10.213.250.0/29")  # 6 hosts: gateway + 5
    ctrs = [lab.container(f"c{i}") for i in range(5)]
    ips = [lab.attach(c.id, c.name, c.pid, "pool")["ip"] for c in ctrs]
    assert ips == [f"10.213.250.{i}" for i in range(2, 7)]
    extra = lab.container("extra")
    with pytest.raises(Conflict) as err:
        lab.attach(extra.id, "extra", extra.pid, "pool")
    assert "no free address" in one_line(err.value)
    lab.detach(ctrs[1].id)
    ctrs[1].kill()
    again = lab.attach(extra.id, "extra", extra.pid, "pool")
    assert again["ip"] == ips[1]
    live = [c["ip"] for c in lab.inspect("pool")["containers"].values()]
    assert len(live) == len(set(live)) == 5


@needs_root
def test_state_persists_across_managers(lab):
    lab.create("keep", subnet="10.213.251.0/24")
    first = lab.container("first")
    lab.attach(first.id, "first", first.pid, "keep")
    other = NetworkManager(str(lab.tmp_path / "state"))  # e.g. after an engine restart
    assert other.inspect("keep")["containers"][first.id]["ip"] == "10.213.251.2"
    second = lab.container("second")
    assert other.attach(second.id, "second", second.pid, "keep")["ip"] == "10.213.251.3"
    other.detach(second.id)
    other.detach(first.id)
    assert lab.inspect("keep")["containers"] == {}


@needs_root
def test_bad_input_gets_one_line_and_leaves_nothing(lab):
    with pytest.raises(SpecError) as err:
        lab.create("bad", subnet="10.213.0.300/24")
    assert "invalid subnet" in one_line(err.value)
    host_route = next((line.split()[0] for line in ip_cmd("-4", "route").splitlines()
                       if not line.startswith("default") and "/" in line.split()[0]), None)
    if host_route is None:  # a host with no network (the test VM): an address of our own, on a link kept down
        ip_cmd("link", "add", "clabt-dummy", "type", "dummy")
        try:
            ip_cmd("addr", "add", "10.213.253.1/24", "dev", "clabt-dummy")
            with pytest.raises(Conflict) as err:
                lab.create("clash", subnet="10.213.253.0/24")
        finally:
            ip_cmd("link", "del", "clabt-dummy")
    else:
        with pytest.raises(Conflict) as err:
            lab.create("clash", subnet=host_route)
    assert "overlaps" in one_line(err.value)
    lab.create("mine", subnet="10.213.252.0/24")
    with pytest.raises(Conflict) as err:
        lab.create("twin", subnet="10.213.252.128/25")
    assert "network mine" in one_line(err.value)
    with pytest.raises(Conflict):
        lab.create("mine")
    with pytest.raises(SpecError):
        lab.create("none")
    ctr = lab.container("web")
    with pytest.raises(NotFound) as err:
        lab.attach(ctr.id, "web", ctr.pid, "nosuchnet")
    assert "network create nosuchnet" in one_line(err.value)
    with pytest.raises(SpecError) as err:
        lab.attach(ctr.id, "web", ctr.pid, "mine", ports=[PortMap(8080, 80, "tcp", "0.0.0.0")])
    assert "loopback" in one_line(err.value)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(Conflict) as err:
            lab.attach(ctr.id, "web", ctr.pid, "mine", ports=[PortMap(free_port(), 81), PortMap(port, 80)])
        assert "already in use" in one_line(err.value)
    # nothing left behind: no eth0, no record, no listener, the address still free
    assert "eth0" not in ctr.run("ip", "-br", "link").stdout
    assert lab.attachment(ctr.id) is None and lab.proxy.published() == []
    assert lab.attach(ctr.id, "web", ctr.pid, "mine")["ip"] == "10.213.252.2"
    with pytest.raises(RuntimeFailure) as err:  # never rewire the host's own namespace
        lab.attach("host-itself", "oops", os.getpid(), "mine")
    assert "host's network namespace" in one_line(err.value)
    assert lab.attachment("host-itself") is None
    with pytest.raises(Conflict) as err:
        lab.remove("mine")
    assert "in use by web" in one_line(err.value)
    with pytest.raises(NotFound):
        lab.remove("nosuchnet")
    with pytest.raises(NotFound):
        lab.shape("nosuchcontainer", rate="1mbit")


@needs_root
def test_gc_after_kill_9(lab, tmp_path):
    alive, dead = lab.container("alive"), lab.container("dead")
    lab.attach(alive.id, "alive", alive.pid, "bridge", hosts_file=alive.hosts_file)
    gone = lab.attach(dead.id, "dead", dead.pid, "bridge", ports=[PortMap(free_port(), 80)])
    os.kill(dead.pid, signal.SIGKILL)  # the container dies with its netns ...
    dead.proc.wait()
    # ... and the engine too: a fresh manager (no proxy of its own) cleans up
    after_crash = NetworkManager(str(lab.tmp_path / "state"))
    removed = after_crash.gc({alive.id})
    assert removed["containers"] == [dead.id]
    assert after_crash.attachment(dead.id) is None
    assert gone["ip"] not in open(alive.hosts_file).read()
    # a link this state root made but never recorded (crash between two steps)
    veth = after_crash.state.veth_name("half-made")
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        ipr.link("add", ifname=veth, kind="veth", peer={"ifname": veth[:-1] + "p"})
        ipr.link("set", index=ipr.link_lookup(ifname=veth)[0], ifalias=after_crash.state.veth_alias("half-made"))
    assert after_crash.gc({alive.id})["links"] == [veth]
    assert veth not in ip_cmd("-o", "link")


@needs_root
@needs_busybox
def test_container_mode_shares_lo_and_names(lab):
    web = lab.container("web")
    lab.attach(web.id, "web", web.pid, "bridge", hosts_file=web.hosts_file)
    side = lab.container("side", share_net_of=web)
    joined = lab.join(side.id, web.id, "side", side.hosts_file)
    assert joined["ip"] == lab.attachment(web.id)["ip"]
    serve_http(web, lab.tmp_path, "from the pod\n")
    assert wget(side, "http://127.0.0.1/index.html").stdout == "from the pod\n"  # same lo
    assert "\tside" in open(web.hosts_file).read() and "\tweb" in open(side.hosts_file).read()
    assert lab.inspect("bridge")["containers"][side.id]["joined"] == web.id
    lab.detach(side.id)
    assert "side" not in open(web.hosts_file).read().split("# containerlab")[1]


@needs_root
def test_usable_from_a_running_event_loop(lab):
    async def in_a_notebook_cell():
        return lab.create("cellnet")["name"], [n["name"] for n in lab.list()]

    assert asyncio.run(in_a_notebook_cell()) == ("cellnet", ["cellnet"])
