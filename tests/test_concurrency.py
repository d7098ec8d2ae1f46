"""Fifty containers started at once on one state root and one network, from five threads
of one engine, two other processes with engines of their own (two notebook kernels)
and the CLI: names claimed once, addresses never duplicated, a host port published
once, `ps` telling the truth, and nothing left after removal."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from conftest import STATE, needs_root
from containerlab_magic.runtime import ContainerSpec, Engine, PortMap
from containerlab_magic.runtime.errors import ContainerError

pytestmark = needs_root

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NET = "concnet"
THREADS, PER_THREAD, KERNELS, PER_KERNEL, BY_CLI = 5, 6, 2, 8, 4  # 30 + 16 + 4 = 50

# A kernel: its own Engine; waits for "go", starts its containers and the contested
# ones, prints what happened, and keeps its engine (and containers) until told to end.
KERNEL = r"""
import json, sys
from containerlab_magic.runtime import ContainerSpec, Engine, PortMap
from containerlab_magic.runtime.errors import ContainerError
tag, count, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
engine = Engine()
engine.start()
print("ready", flush=True)
sys.stdin.readline()
def attempt(**fields):
    try:
        return engine.run(ContainerSpec(("sleep", "60"), image="busybox", network="concnet", detach=True,
                                        **fields)).name
    except ContainerError as e:
        return "error: " + str(e)
out = {"mine": [attempt(name=f"{tag}-{i}") for i in range(count)],
       "name": attempt(name="contested"), "port": attempt(ports=(PortMap(port, 80),))}
print(json.dumps(out), flush=True)
sys.stdin.readline()
engine.close()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args) -> subprocess.CompletedProcess:
    path = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "containerlab_magic", *args], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, PYTHONPATH=path), cwd="/")


@pytest.fixture
def network(module_no_leaks):
    with Engine(prewarm=False) as engine:
        engine.networks().create(NET)
        yield
        engine.networks().remove(NET)


def test_fifty_containers_at_once_from_threads_kernels_and_the_cli(network):
    port = free_port()
    path = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    kernels = [subprocess.Popen([sys.executable, "-I", "-c", KERNEL, f"k{n}", str(PER_KERNEL), str(port)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/",
                                env=dict(os.environ, PYTHONPATH=path)) for n in range(KERNELS)]
    engine = Engine()
    results: dict[str, list] = {"mine": [], "name": [], "port": []}
    lock = threading.Lock()

    def attempt(**fields) -> str:
        try:
            return engine.run(ContainerSpec(("sleep", "60"), image="busybox", network=NET, detach=True,
                                            **fields)).name
        except ContainerError as e:
            return "error: " + str(e)

    def thread(n: int, barrier: threading.Barrier) -> None:
        barrier.wait()
        mine = [attempt(name=f"t{n}-{i}") for i in range(PER_THREAD)]
        name, published = attempt(name="contested"), attempt(ports=(PortMap(port, 80),))
        with lock:
            results["mine"] += mine
            results["name"].append(name)
            results["port"].append(published)

    def by_cli(n: int) -> str:
        r = cli("run", "-d", "--name", f"c{n}", "--net", NET, "busybox", "sleep", "60")
        return f"c{n}" if r.returncode == 0 else "error: " + r.stderr.strip()

    try:
        engine.start()
        for k in kernels:
            assert k.stdout.readline().strip() == "ready"
        barrier = threading.Barrier(THREADS)
        workers = [threading.Thread(target=thread, args=(n, barrier)) for n in range(THREADS)]
        cli_results: list[str] = []
        cli_worker = threading.Thread(target=lambda: cli_results.extend(by_cli(n) for n in range(BY_CLI)))
        for k in kernels:
            k.stdin.write("go\n")
            k.stdin.flush()
        for w in [*workers, cli_worker]:
            w.start()
        for w in [*workers, cli_worker]:
            w.join(timeout=120)
        for k in kernels:
            out = json.loads(k.stdout.readline())
            results["mine"] += out["mine"]
            results["name"].append(out["name"])
            results["port"].append(out["port"])
        results["mine"] += cli_results

        errors = [r for r in results["mine"] if r.startswith("error")]
        assert errors == [] and len(set(results["mine"])) == THREADS * PER_THREAD + KERNELS * PER_KERNEL + BY_CLI
        # a contested name: claimed once; everyone else told so in one line
        won = [r for r in results["name"] if r == "contested"]
        lost = [r for r in results["name"] if r.startswith("error")]
        assert len(won) == 1 and len(lost) == THREADS + KERNELS - 1, results["name"]
        assert all("contested" in r and "\n" not in r for r in lost), lost
        # a contested host port: published once
        published = [r for r in results["port"] if not r.startswith("error")]
        assert len(published) == 1 and all(str(port) in r for r in results["port"] if r.startswith("error"))

        running = {c["name"]: c for c in engine.ps()}
        expected = set(results["mine"]) | {"contested"} | set(published)
        assert set(running) == expected  # ps: exactly what started, from every starter
        addresses = [c["ip"] for c in running.values()]
        assert None not in addresses and len(set(addresses)) == len(addresses)  # no address twice
    finally:
        for k in kernels:  # their engines end their own containers
            try:
                k.stdin.write("end\n")
                k.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass
        for k in kernels:
            k.wait(timeout=60)
            k.stdin.close()  # (their pipes, or each test run leaves four fds to the collector)
            k.stdout.close()
        for c in engine.ps(all=True):
            try:
                engine.rm(c["id"], force=True)
            except ContainerError:
                pass  # (one of a kernel's, gone with it meanwhile)
        engine.close()
    assert [c["name"] for c in Engine(prewarm=False).ps(all=True)] == []
    with open(os.path.join(STATE, "networks", "state.json")) as f:
        assert json.load(f)["containers"] == {}  # every address returned
