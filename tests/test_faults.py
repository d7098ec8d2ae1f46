"""Faults injected at every point of a start and of exec, rm, network rm and commit (the library
call and the CLI verb on a running container)
(runtime/faults.py: CONTAINERLAB_FAIL_AT_STEP=POINT raises there, kill:POINT makes the
process die there).  Afterwards either the thing works or nothing of it exists once
gc (or the same verb again) ran: the host is as before, compared on what the lab
touches (processes in our containers' PID namespaces, cgroup directories, state
entries and names, veths and bridges of this state root, mounts, network members).

(The start steps' raise variant is here for each network mode, host compared exactly;
tests/test_plan.py's test_failure_at_a_step_undoes_every_step_before_it adds warm spares.)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import STATE, _spare, needs_root, our_mounts, snapshot
from containerlab_magic.runtime import ContainerSpec, Engine
from containerlab_magic.runtime.errors import ContainerError, RuntimeFailure
from containerlab_magic.runtime.faults import ENV
from containerlab_magic.runtime.plan.build import build
from containerlab_magic.runtime.state import wait_for
from images.fixtures import pushed  # noqa: F401  (a local registry: commit needs a pulled parent)

pytestmark = needs_root
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NET = "faultnet"
INJECTED: dict[str, int] = {}  # point -> faults injected and survived (printed at the end)


def links() -> set[str]:
    from containerlab_magic.runtime.network.state import NetworkState

    return set(NetworkState(STATE).links())


SEEN: set[str] = set()  # every container id this state root has shown (its ledger, its state folders)


def cgroup_dirs() -> set[str]:
    """Group directories under the lab's hierarchies of any container this state root has had,
    whatever its ledger says now (other runs on the host make groups of their own)."""
    for kind in ("cgroups", "containers"):
        try:
            SEEN.update(os.listdir(os.path.join(STATE, kind)))
        except FileNotFoundError:
            pass
    found = set()
    for controller in os.listdir("/sys/fs/cgroup"):
        for root, dirs, _files in os.walk(os.path.join("/sys/fs/cgroup", controller, "containerlab")):
            found |= {os.path.join(root, d) for d in dirs if d in SEEN and not _spare(d)}
    return found


def host() -> dict:
    state = dict(snapshot(), links=links(), mounts=our_mounts(), cgroup_dirs=cgroup_dirs())
    try:
        state["names"] = set(os.listdir(os.path.join(STATE, "names")))
    except FileNotFoundError:
        state["names"] = set()
    try:
        with open(os.path.join(STATE, "networks", "state.json")) as f:
            state["members"] = set(json.load(f).get("containers", {}))
    except (OSError, ValueError):
        state["members"] = set()
    return state


def back_to(before: dict, timeout: float = 10.0) -> None:
    ok = wait_for(lambda: host() == before, timeout, 0.05)
    now = host()
    assert ok, {k: (before[k], now[k]) for k in before if before[k] != now[k]}


@pytest.fixture(scope="module", autouse=True)
def lab_network(module_no_leaks):
    with Engine(prewarm=False) as engine:
        engine.networks().create(NET)
        owner = engine.run(spec_for("none", OWNER))  # whose network --net container: joins
        yield
        engine.rm(owner.id, force=True)
        engine.networks().remove(NET)
    print("\nfaults injected and survived: " + ", ".join(f"{k} {v}" for k, v in sorted(INJECTED.items())))


def survived(point: str) -> None:
    INJECTED[point] = INJECTED.get(point, 0) + 1


def engine_with(monkeypatch, hook: str) -> Engine:
    """An engine whose shim (started now, taking its copy of CONTAINERLAB_*) has the hook."""
    monkeypatch.setenv(ENV, hook)
    engine = Engine(prewarm=False)
    engine.start()
    monkeypatch.delenv(ENV)
    return engine


def spec_for(net: str, name: str | None = None) -> ContainerSpec:
    return ContainerSpec(("sleep", "30"), image="busybox", network=net, detach=True, name=name)


def start_points(net: str) -> list[str]:
    return [step.kind for step in build(spec_for(net), cgroups=True)]


OWNER = "fault-netowner"
# every network mode: none, a bridge network, the host's, another container's
CASES = [(net, kind) for net in ("none", NET, "host", f"container:{OWNER}") for kind in start_points(net)]


@pytest.mark.parametrize("net,kind", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_a_start_failing_at_a_step_says_so_in_one_line_and_leaves_nothing(monkeypatch, net, kind):
    """The raise variant, without gc: the executor's undo alone must put the host back."""
    before = host()
    with engine_with(monkeypatch, kind) as engine:
        with pytest.raises(RuntimeFailure) as err:
            engine.run(spec_for(net, f"failed-at-{kind}"))
        assert f"failing at step {kind!r}" in str(err.value) and "\n" not in str(err.value), err.value
        assert all(c["name"] != f"failed-at-{kind}" for c in engine.ps(all=True))
        assert not os.path.lexists(os.path.join(STATE, "names", f"failed-at-{kind}"))
    back_to(before)
    survived(f"start:{kind}")


@pytest.mark.parametrize("net,kind", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_a_shim_killed_at_a_start_step_leaves_nothing_once_gc_ran(monkeypatch, net, kind):
    before = host()
    engine = engine_with(monkeypatch, f"kill:{kind}")
    with engine:
        with pytest.raises(RuntimeFailure) as err:
            engine.run(spec_for(net, f"killed-at-{kind}"))
        # (the shim may die before the request reaches it: it runs the first steps for a slot
        # ahead of need when idle, state and cgroup among them, and the hook kills it there too)
        assert re.search(r"shim (exited|is gone)", str(err.value)) and "\n" not in str(err.value), err.value
    host()  # (notes the ids it left, so their groups are looked for below)
    with Engine(prewarm=False) as fresh:
        fresh.gc()
        assert all(c["name"] != f"killed-at-{kind}" for c in fresh.ps(all=True))
    back_to(before)
    survived(f"start:kill:{kind}")


def test_the_next_engine_reaps_what_a_killed_shim_left_without_gc(monkeypatch):
    """A kernel whose shim died (here: killed once its container runs) leaves an orphan;
    the next private engine's first request reaps it, no `gc` needed."""
    before = host()
    with engine_with(monkeypatch, "kill:go") as engine, pytest.raises(RuntimeFailure):
        engine.run(spec_for(NET, "orphan"))
    assert "orphan" in {c["name"] for c in Engine(prewarm=False).ps(all=True)}  # dead, until someone reaps it
    host()
    with Engine(prewarm=False) as fresh:
        assert fresh.run(ContainerSpec(("true",), image="busybox")).wait(30).exit_code == 0
        assert "orphan" not in {c["name"] for c in fresh.ps(all=True)}
    back_to(before)
    survived("kill:go, reaped by the next engine")


def test_exec_failing_after_its_fork_leaves_the_container_running(monkeypatch):
    before = host()
    with engine_with(monkeypatch, "exec") as engine:
        engine.run(spec_for("none", "exec-fails"))
        with pytest.raises(RuntimeFailure) as err:
            engine.exec("exec-fails", ["sleep", "30"])
        assert "failing at step 'exec'" in str(err.value)
        # the forked exec is gone: only PID 1 (sleep) is in the container
        pid = engine.inspect("exec-fails")["pid"]
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            assert f.read().split() == []
        assert engine.inspect("exec-fails")["status"] == "running"
        engine.rm("exec-fails", force=True)
    back_to(before)
    survived("exec")


def test_a_shim_killed_during_exec_leaves_nothing_once_gc_ran(monkeypatch):
    before = host()
    with engine_with(monkeypatch, "kill:exec") as engine:
        engine.run(spec_for(NET, "exec-killed"))
        with pytest.raises(ContainerError):
            engine.exec("exec-killed", ["true"])
    host()
    with Engine(prewarm=False) as fresh:
        assert any("exec-killed" in line for line in fresh.gc())
    back_to(before)
    survived("kill:exec")


def test_rm_failing_midway_is_finished_by_rm_again(monkeypatch):
    before = host()
    with Engine(prewarm=False) as engine:
        engine.run(spec_for(NET, "rm-fails"))
        monkeypatch.setenv(ENV, "rm")
        with pytest.raises(RuntimeFailure):
            engine.rm("rm-fails", force=True)
        monkeypatch.delenv(ENV)
        host()
        engine.rm("rm-fails", force=True)
    back_to(before)
    survived("rm")


def cli(*args, env=None, timeout=60) -> subprocess.CompletedProcess:
    path = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "containerlab_magic", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, PYTHONPATH=path, **(env or {})), cwd="/")


def test_a_cli_killed_during_rm_leaves_what_rm_or_gc_finishes():
    before = host()
    assert cli("run", "-d", "--name", "rm-killed", "--net", NET, "busybox", "sleep", "30").returncode == 0
    host()
    r = cli("rm", "-f", "rm-killed", env={ENV: "kill:rm"})
    assert r.returncode == -9, r.stderr
    r = cli("rm", "-f", "rm-killed")
    assert r.returncode in (0, 1), r.stderr  # (it may already be gone with its dead state)
    cli("gc")
    back_to(before, timeout=15)  # (the daemon lingers 2 s, then ends)
    survived("kill:rm")


@pytest.mark.parametrize("hook", ["network-rm", "kill:network-rm"])
def test_network_rm_failing_midway_is_finished_by_network_rm_again(monkeypatch, hook):
    before = host()
    with Engine(prewarm=False) as engine:
        engine.networks().create("faultnet2")
    if hook.startswith("kill:"):
        assert cli("network", "rm", "faultnet2", env={ENV: hook}).returncode == -9
    else:
        monkeypatch.setenv(ENV, hook)
        with Engine(prewarm=False) as engine, pytest.raises(RuntimeFailure):
            engine.networks().remove("faultnet2")
        monkeypatch.delenv(ENV)
    assert "faultnet2" in cli("network", "ls").stdout  # not half gone: still listed, so rm can finish it
    r = cli("network", "rm", "faultnet2")
    assert r.returncode == 0, r.stderr
    assert "faultnet2" not in cli("network", "ls").stdout
    back_to(before)
    survived(hook)


COMMIT = ("import sys\n"
          "from containerlab_magic.runtime.images import ImageStore\n"
          "from containerlab_magic.runtime.images.commit import commit\n"
          "commit(ImageStore(sys.argv[1]).oci, sys.argv[2], 'faulty:1')\n")


@pytest.mark.parametrize("hook", ["commit", "kill:commit"])
def test_commit_failing_midway_leaves_no_image_and_prune_frees_its_blobs(tmp_path, hook):
    from containerlab_magic.runtime.images import ImageStore

    data, source = tmp_path / "data", tmp_path / "upper"
    (source / "etc").mkdir(parents=True)
    (source / "etc" / "greeting").write_text("hello from a layer\n")
    store = ImageStore(str(data))
    blobs_before = set(store.oci.blobs.all())
    path = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    r = subprocess.run([sys.executable, "-c", COMMIT, str(data), str(source)], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=path, **{ENV: hook}), cwd="/", timeout=60)
    assert r.returncode == (-9 if hook.startswith("kill:") else 1), r.stderr
    if not hook.startswith("kill:"):
        assert "failing at step 'commit'" in r.stderr
    store = ImageStore(str(data))
    assert not [name for name in store.oci.refs() if "faulty" in name]  # no image by that name, half or whole
    freed = store.oci.prune()
    assert freed["blobs"] >= 1  # the layer the failed commit had stored
    assert set(store.oci.blobs.all()) == blobs_before and os.listdir(store.oci.blobs.tmp) == []
    survived(hook)


def test_a_cli_killed_during_commit_of_a_container_leaves_the_store_as_it_was(pushed):
    """The whole verb, not just the library call: `commit` of a running container, killed
    once its layer is stored.  No image by the new name, no name left over at all, and
    `gc` then `image prune` free its layer and its diff folder (a dead process's tmp)."""
    from conftest import DATA
    from containerlab_magic.runtime.images import ImageStore

    base, new = pushed.ref("busybox:1.35"), pushed.ref("killed-commit:1")
    store = ImageStore(DATA)
    had_base = base in store.oci.refs()
    assert cli("pull", "-q", base).returncode == 0
    refs, blobs = dict(store.oci.refs()), set(store.oci.blobs.all())
    before = host()
    r = cli("run", "-d", "--name", "committee", "--net", NET, base, "sh", "-c", "echo made > /made; sleep 60")
    assert r.returncode == 0, r.stderr
    try:
        assert wait_for(lambda: cli("exec", "committee", "cat", "/made").stdout == "made\n", 10, 0.1)
        r = cli("commit", "committee", new, env={ENV: "kill:commit"})
        assert r.returncode == -9, r.stderr
        assert store.oci.refs() == refs  # no half image under the new name, no temporary name
        assert set(store.oci.blobs.all()) > blobs  # the layer it had stored before it died
        assert [n for n in os.listdir(store.oci.blobs.tmp) if n.startswith("commit-")]  # and its diff folder
    finally:
        cli("rm", "-f", "committee")
    assert cli("gc").returncode == 0
    assert cli("image", "prune").returncode == 0
    assert store.oci.refs() == refs and set(store.oci.blobs.all()) == blobs
    assert os.listdir(store.oci.blobs.tmp) == []
    back_to(before, timeout=15)  # (the CLI's daemon lingers 2 s, then ends)
    if not had_base:  # leave the shared data root as this test found it
        store.oci.set_ref(base, None)
        store.oci.prune()
    survived("kill:commit (CLI, a running container)")
