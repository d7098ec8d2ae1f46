"""The cgroup drivers on the real kernel: whichever driver this host has (v1 here, v2 in
the VM of tests/vm/run-cgroup-v2.sh), driven with processes these tests start.

Needs root and a writable cgroup hierarchy; each test removes its groups, and a fixture
checks that no `containerlab/<id>` group of this run is left behind.
"""

from __future__ import annotations

import copy
import errno
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from containerlab_magic.runtime.cgroups import describe_host, fs, open_manager
from containerlab_magic.runtime.cgroups.base import conversion_cpu_weight, conversion_io_weight
from containerlab_magic.runtime.cgroups.detect import CGROUP2_SUPER_MAGIC, fs_magic
from containerlab_magic.runtime.errors import Conflict, HostUnsupported
from containerlab_magic.runtime.spec import Limits

MiB = 1 << 20
PREFIX = f"pytest-{os.getpid()}-"
_numbers = itertools.count()

MGR = open_manager() if os.geteuid() == 0 else None
pytestmark = pytest.mark.skipif(
    MGR is None, reason=f"no writable cgroup hierarchy: {describe_host().get('why_not')}" if os.geteuid() == 0
    else "cgroup tests need root")


def ours() -> list[str]:
    return [name for name in MGR.list() if name.startswith(PREFIX)]


@pytest.fixture(scope="module", autouse=True)
def nothing_left_at_module_end():
    print(f"\ncgroup driver: v{MGR.version}: {json.dumps(MGR.describe())}")
    yield
    assert ours() == [], "cgroups left behind by this test module"


class Groups:
    """Creates groups and processes for one test and always removes them."""

    def __init__(self):
        self.groups = []
        self.procs: list[subprocess.Popen] = []

    def create(self, **limits) -> object:
        cg = MGR.create(PREFIX + str(next(_numbers)), Limits(**limits))
        self.groups.append(cg)
        return cg

    def spawn(self, cg, argv: list[str], **kwargs) -> subprocess.Popen:
        """Start argv as a member of cg: the child joins by writing 0 to each cgroup.procs before exec."""
        files = cg.procs_files

        def join():
            for path in files:
                fd = os.open(path, os.O_WRONLY)
                os.write(fd, b"0")
                os.close(fd)

        # preexec_fn is the shim's own pattern (fork, join, exec); this test process starts no threads.
        proc = subprocess.Popen(argv, preexec_fn=join, stdin=subprocess.PIPE, stdout=subprocess.PIPE,  # noqa: PLW1509
                                stderr=subprocess.PIPE, text=True, **kwargs)
        self.procs.append(proc)
        return proc

    def python(self, cg, code: str) -> subprocess.Popen:
        return self.spawn(cg, [sys.executable, "-c", textwrap.dedent(code)])

    def cleanup(self):
        for cg in self.groups:
            cg.kill_all()
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        for cg in self.groups:
            cg.remove()


@pytest.fixture
def groups():
    g = Groups()
    try:
        yield g
    finally:
        g.cleanup()
        assert ours() == [], "this test left cgroups behind"


def cpu_ns(cg) -> int:
    return cg.stats().cpu_usage_ns


# --- detection and description --------------------------------------------------------------------

def test_driver_matches_the_kernel():
    unified = fs_magic("/sys/fs/cgroup") == CGROUP2_SUPER_MAGIC
    assert MGR.version == (2 if unified else 1)
    info = MGR.describe()
    assert info["version"] == MGR.version and info["writable"] is True
    assert {"memory", "cpu", "pids"} <= set(info["controllers"])
    assert open_manager() is MGR  # detected once


def test_weight_conversions_match_runc():
    assert conversion_cpu_weight(2) == 1
    assert conversion_cpu_weight(1024) == 39
    assert conversion_cpu_weight(262144) == 10000
    assert conversion_io_weight(10) == 1 and conversion_io_weight(1000) == 10000


# --- limits enforced by the kernel ---------------------------------------------------------------

def test_memory_hog_is_oom_killed_at_its_limit(groups):
    cg = groups.create(memory=32 * MiB)
    hog = groups.python(cg, "data = b'x' * (200 << 20)\nprint('survived')")
    out, _ = hog.communicate(timeout=60)
    assert hog.returncode == -signal.SIGKILL and "survived" not in out
    assert cg.oom_killed()
    usage = cg.stats()
    assert usage.oom_kills >= 1
    assert usage.memory_limit == 32 * MiB
    assert usage.memory_peak_bytes is None or usage.memory_peak_bytes <= 33 * MiB


def test_busy_loop_gets_half_a_cpu(groups):
    cg = groups.create(cpus=0.5)
    groups.python(cg, "while True: pass")
    time.sleep(0.3)
    used0, wall0 = cpu_ns(cg), time.monotonic_ns()
    time.sleep(2.0)
    used1, wall1 = cpu_ns(cg), time.monotonic_ns()
    share = (used1 - used0) / (wall1 - wall0)
    assert 0.425 <= share <= 0.575, f"got {share:.3f} CPU under --cpus 0.5"
    usage = cg.stats()
    assert usage.nr_throttled > 0 and usage.throttled_ns > 0


def test_fork_bomb_stops_at_pids_limit(groups):
    cg = groups.create(pids_limit=8)
    bomb = groups.spawn(cg, ["/bin/sh", "-c", "i=0; while [ $i -lt 40 ]; do sleep 2 & i=$((i+1)); done; wait"])
    # Let it run its course (slow under an emulated VM): forks past the limit fail, the
    # sleeps end, the shell exits.  The group never holds more than the limit.
    peak = 0
    deadline = time.monotonic() + 120
    while bomb.poll() is None and time.monotonic() < deadline:
        peak = max(peak, cg.stats().pids_current or 0)
        time.sleep(0.02)
    peak = max(peak, cg.stats().pids_current or 0)  # the sleeps it did start are still there
    assert cg.stats().pids_limit == 8
    cg.kill_all()
    _, err = bomb.communicate(timeout=30)
    assert 0 < peak <= 8, (peak, err)
    assert "fork" in err.lower(), err
    assert cg.pids() == []


def test_raising_memory_live_lets_the_allocation_succeed(groups):
    cg = groups.create(memory=32 * MiB)
    sleeper = groups.spawn(cg, ["/bin/sh", "-c", "read line"])  # keeps the container running
    alloc = "data = b'x' * (64 << 20)\nprint('ok')"
    first = groups.python(cg, alloc)
    first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL
    cg.update(Limits(memory=128 * MiB))
    assert cg.stats().memory_limit == 128 * MiB
    second = groups.python(cg, alloc)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0 and out.strip() == "ok", err
    assert sleeper.poll() is None
    if MGR.version == 1 and "memory.memsw.limit_in_bytes" in cg.files():  # swap stays off at the new limit
        assert int(cg.files()["memory.memsw.limit_in_bytes"]) == 128 * MiB


def test_live_update_of_cpus_and_pids(groups):
    cg = groups.create(cpus=1, pids_limit=100)
    groups.spawn(cg, ["/bin/sh", "-c", "read line"])
    cg.update(Limits(cpus=0.25, pids_limit=50))
    files = cg.files()
    if MGR.version == 2:
        assert files["cpu.max"].split() == ["25000", "100000"]
    else:
        assert files["cpu.cfs_quota_us"].strip() == "25000"
    assert cg.stats().pids_limit == 50


def test_freeze_stops_progress_and_thaw_resumes(groups):
    cg = groups.create()
    groups.python(cg, "while True: pass")
    time.sleep(0.3)
    cg.freeze()
    assert cg.frozen
    frozen_at = cpu_ns(cg)
    time.sleep(0.5)
    # a busy loop would add ~500 ms here; v2 flushes its CPU statistics lazily, so the
    # last slice before the freeze may still arrive (12 ms seen in the VM)
    assert cpu_ns(cg) - frozen_at < 50_000_000
    cg.thaw()
    assert not cg.frozen
    time.sleep(0.3)
    assert cpu_ns(cg) > frozen_at + 50_000_000


def test_stats_track_a_known_allocation(groups):
    cg = groups.create(memory=256 * MiB)
    proc = groups.python(cg, """
        import sys
        print('idle', flush=True); sys.stdin.readline()
        data = b'x' * (64 << 20)
        print('allocated', flush=True); sys.stdin.readline()
    """)
    assert proc.stdout.readline().strip() == "idle"
    before = cg.stats()
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "allocated"
    after = cg.stats()
    grown = after.memory_bytes - before.memory_bytes
    assert 60 * MiB <= grown <= 80 * MiB, f"memory grew by {grown / MiB:.1f} MiB for a 64 MiB allocation"
    if after.memory_peak_bytes is not None:
        assert after.memory_peak_bytes >= after.memory_bytes
    assert after.pids_current == 1
    assert after.cpu_usage_ns > 0 and after.cpu_user_ns is not None
    assert after.oom_kills == 0 and not cg.oom_killed()
    assert cg.pids() == [proc.pid]


def test_kill_all_kills_a_double_forked_daemon(groups):
    cg = groups.create()
    starter = groups.spawn(cg, ["/bin/sh", "-c", "(sleep 1000 >/dev/null 2>&1 </dev/null &); echo started"])
    assert starter.communicate(timeout=10)[0].strip() == "started"
    daemons = cg.pids()
    assert len(daemons) == 1 and daemons[0] != starter.pid  # the reparented sleep
    cg.kill_all()
    assert cg.pids() == []
    state = fs.read_opt(f"/proc/{daemons[0]}/stat")
    assert state is None or state.split(")")[1].split()[0] == "Z"


def test_add_moves_a_running_process_in(groups):
    cg = groups.create(pids_limit=5)
    proc = subprocess.Popen(["/bin/sh", "-c", "read line"], stdin=subprocess.PIPE)
    groups.procs.append(proc)
    cg.add(proc.pid)
    assert cg.pids() == [proc.pid]
    assert all(os.path.isabs(p) and os.path.exists(p) for p in cg.procs_files)


# --- errors, and nothing left behind -------------------------------------------------------------

def test_cpuset_outside_the_host_raises_and_leaves_no_group(groups):
    limits = Limits(cpuset_cpus="0-4095")
    assert "--cpuset-cpus" in MGR.missing_for(limits)
    with pytest.raises(HostUnsupported, match="--cpuset-cpus 0-4095"):
        MGR.create(PREFIX + "cpuset", limits)
    assert MGR.open(PREFIX + "cpuset") is None


def test_cpuset_within_the_host_applies(groups):
    cg = groups.create(cpuset_cpus="0")
    assert cg.files()["cpuset.cpus"].strip() == "0"


def test_missing_controller_raises_one_line_naming_it(groups):
    crippled = copy.copy(MGR)
    crippled.controllers = {k: v for k, v in MGR.controllers.items() if k != "memory"}
    reason = crippled.missing_for(Limits(memory=64 * MiB))
    assert reason.startswith("--memory needs the cgroup memory controller") and "\n" not in reason
    with pytest.raises(HostUnsupported):
        crippled.create(PREFIX + "nomem", Limits(memory=64 * MiB))
    assert MGR.open(PREFIX + "nomem") is None
    assert crippled.missing_for(Limits(cpus=1)) is None


def test_failure_while_applying_removes_what_was_made(groups, monkeypatch):
    real_write = fs.write

    def failing_write(path, data, hint=""):
        if path.endswith("pids.max"):
            raise fs.CgroupFileError("write", path, OSError(errno.EINVAL, ""), str(data))
        return real_write(path, data, hint)

    monkeypatch.setattr(fs, "write", failing_write)
    with pytest.raises(fs.CgroupFileError, match=r"failed to write 8 to /sys/fs/cgroup/.*pids.max: EINVAL"):
        MGR.create(PREFIX + "fails", Limits(memory=64 * MiB, pids_limit=8))
    monkeypatch.undo()
    assert MGR.open(PREFIX + "fails") is None


def test_duplicate_group_is_a_conflict_and_keeps_the_first(groups):
    cg = groups.create()
    with pytest.raises(Conflict, match="already exists"):
        MGR.create(cg.container_id, Limits())
    assert MGR.open(cg.container_id) is not None
    assert cg.container_id in MGR.list()


@pytest.mark.skipif(MGR is None or MGR.version != 1, reason="v1 refuses a limit below usage; v2 OOM-kills instead")
def test_v1_memory_below_usage_names_path_data_and_usage(groups):
    cg = groups.create(memory=256 * MiB)
    proc = groups.python(cg, "import sys\ndata = b'x' * (64 << 20)\nprint('ready', flush=True)\nsys.stdin.readline()")
    assert proc.stdout.readline().strip() == "ready"
    with pytest.raises(fs.CgroupFileError, match=r"failed to write 16777216 to .*memory.limit_in_bytes: EBUSY"):
        cg.update(Limits(memory=16 * MiB))


def test_remove_is_idempotent_and_open_finds_existing(groups):
    cg = groups.create(memory=64 * MiB)
    again = MGR.open(cg.container_id)
    assert again is not None and again.procs_files == cg.procs_files
    assert again.stats().memory_limit == 64 * MiB
    cg.remove()
    cg.remove()
    assert MGR.open(cg.container_id) is None
    assert cg.container_id not in MGR.list()


# --- v2: the delegated subtree and the no-internal-processes rule --------------------------------

DELEGATED_CHILD = """
import json, os, sys
from containerlab_magic.runtime.cgroups.v2 import subtree
from containerlab_magic.runtime.cgroups.v2.manager import V2Manager
from containerlab_magic.runtime.spec import Limits
root = sys.argv[1]
own = open('/proc/self/cgroup').read().split('0::')[1].strip()
subtree._writable = lambda group, real=subtree._writable: group != root and real(group)  # as if not root
sub = subtree.prepare(root, own)
mgr = V2Manager('unified', root, sub)
cg = mgr.create('inner', Limits(memory=64 << 20, pids_limit=10))
print(json.dumps({'describe': mgr.describe(), 'self': open('/proc/self/cgroup').read().strip(),
                  'files': cg.files()}))
"""


@pytest.mark.skipif(MGR is None or MGR.version != 2, reason="delegation is a cgroup v2 matter")
def test_v2_delegated_subtree_moves_only_ourselves(groups):
    cg = groups.create()  # stands in for a delegated group: the child runs inside it
    child = groups.spawn(cg, [sys.executable, "-c", DELEGATED_CHILD, MGR.mount],
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out, err = child.communicate(timeout=60)
    base = os.path.join(MGR.lab, cg.container_id)
    try:
        assert child.returncode == 0, err
        report = json.loads(out)
        info = report["describe"]
        assert info["base"] == base and "delegated" in info["how"]
        assert {"memory", "pids"} <= set(info["controllers"])
        assert report["self"] == "0::" + base[len(MGR.mount):] + "/engine"
        assert report["files"]["memory.max"].strip() == str(64 << 20)
    finally:
        for leaf in ("containerlab/inner", "containerlab", "engine"):
            fs.rmdir(os.path.join(base, leaf))


# --- swap and the no-cgroup description ----------------------------------------------------------

def test_swap_is_off_at_the_memory_limit_unless_asked(groups):
    off = groups.create(memory=64 * MiB)
    extra = groups.create(memory=64 * MiB, memory_swap=96 * MiB)
    unlimited = groups.create(memory=64 * MiB, memory_swap=-1)
    if MGR.version == 2:
        name, scale = "memory.swap.max", {off: "0", extra: str(32 * MiB), unlimited: "max"}
    else:
        name, scale = "memory.memsw.limit_in_bytes", {off: str(64 * MiB), extra: str(96 * MiB)}
    for cg, want in scale.items():
        files = cg.files()
        if name in files:
            assert files[name].strip() == want
        else:
            assert any("swap is not limited" in note for note in cg.notes)


def test_no_cgroup_filesystem_is_described_not_raised():
    assert open_manager("/nonexistent-cgroup-root") is None
    info = describe_host("/nonexistent-cgroup-root")
    assert info["writable"] is False and "mount -t cgroup2" in info["why_not"]


def test_the_lab_parent_goes_when_idle_and_comes_back_when_needed(groups, tmp_path):
    """release() (an engine's last act) removes the lab's parent groups once no group is
    left in them, never while one is; the next group makes them again, set up as at start."""
    from containerlab_magic.runtime import ContainerSpec, Engine

    labs = sorted({MGR.lab_dir_for(name) for name in MGR.controllers})
    cg = groups.create()
    assert MGR.release() == [] and all(os.path.isdir(lab) for lab in labs)  # a group inside: it stays
    groups.groups.remove(cg)
    cg.remove()
    others = MGR.list()  # groups of other engines on this machine, if any are running
    removed = MGR.release()
    assert removed == ([] if others else labs)
    assert all(os.path.isdir(lab) for lab in labs) == bool(others)
    again = groups.create(memory=64 << 20, pids_limit=32)  # the parents are made again
    proc = groups.python(again, "print(open('/proc/self/cgroup').read())")
    out, _ = proc.communicate(timeout=30)
    assert PREFIX in out and again.stats().memory_limit == 64 << 20
    groups.groups.remove(again)
    again.remove()
    with Engine(state_dir=str(tmp_path / "state")) as engine:  # an engine releases them as it ends
        assert engine.run(ContainerSpec(["true"], image="busybox")).wait(30).exit_code == 0
    assert all(os.path.isdir(lab) for lab in labs) == bool(MGR.list())
