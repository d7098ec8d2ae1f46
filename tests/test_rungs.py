"""The isolation ladder on the real kernel: as root, as a real unprivileged user (with
and without no_new_privs, with and without /etc/subuid, with and without a delegated
cgroup), and inside an emulated locked-down pod under each seccomp profile.

The unprivileged runs use the test user `clabtest` (made if missing, then kept: see
tests/pod/users.py).  The pod runs need runc (tests/pod/run.py).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
import time

import pytest

from containerlab_magic.runtime import probes, rungs
from pod import bundle, run as pod_run, users

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: probes the root rung")
needs_users = pytest.mark.skipif(users.why_not() is not None, reason=str(users.why_not()))
needs_pod = pytest.mark.skipif(pod_run.why_not() is not None, reason=str(pod_run.why_not()))
PROBE_AS_USER = "from containerlab_magic.runtime import rungs; print(rungs.probe().to_json())"


@pytest.fixture(scope="module")
def user_source():
    source = users.package_copy()
    yield source
    shutil.rmtree(source)


def probe_as(uid: int, gid: int, source: str, **kw) -> rungs.Result:
    ran = users.run_as(uid, gid, source, PROBE_AS_USER, **kw)
    assert ran.returncode == 0, ran.stderr
    return rungs.Result.from_dict(json.loads(ran.stdout))


# ---- in this process ------------------------------------------------------------------------


@needs_root
def test_root_gets_the_root_rung():
    result = rungs.probe(refresh=True)
    assert result.rung == "root", rungs.describe(result)
    assert result.has("root-ns") and result.has("overlay") and result.can_start
    assert result.host.uid == 0 and result.how == "fork"


def test_probe_runs_once_per_process():
    first = rungs.probe()
    assert rungs.probe() is first
    assert rungs.probe(refresh=True) is not first


def test_threaded_caller_probes_in_a_fresh_process(monkeypatch):
    forked = rungs.probe(refresh=True)
    monkeypatch.setattr(rungs, "_cached", None)
    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        fresh = rungs.probe()
    finally:
        release.set()
        thread.join()
    assert fresh.how == "fresh process"
    assert fresh.rung == forked.rung
    assert [(p.name, p.ok) for p in fresh.probes] == [(p.name, p.ok) for p in forked.probes]


def test_result_round_trips_through_json():
    result = rungs.probe()
    assert rungs.Result.from_dict(json.loads(result.to_json())) == result


def test_a_failing_child_reports_its_errno():
    def refuse():
        raise OSError(errno.EPERM, "unshare: Operation not permitted")

    outcome = probes.run_child(refuse)
    assert (outcome.ok, outcome.errno) == (False, errno.EPERM)
    assert "unshare" in outcome.detail


def test_a_hung_child_is_killed_at_the_deadline(monkeypatch):
    monkeypatch.setattr(probes, "CHILD_DEADLINE", 0.3)
    started = time.monotonic()
    outcome = probes.run_child(time.sleep, 30)
    assert not outcome.ok and "without a report" in outcome.detail
    assert time.monotonic() - started < 5
    with open(f"/proc/self/task/{os.getpid()}/children") as f:  # reaped: no zombie child left
        children = f.read().split()
    assert [pid for pid in children if _state(pid) == "Z"] == []


def _state(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_describe_gives_each_probe_its_errno_and_fix():
    host = rungs.read_host()
    failed = rungs.Probe("pidns", "PID namespace + fresh /proc", False, errno.EPERM, "mount proc", "set procMount")
    skipped = rungs.Probe("uts", "UTS namespace + sethostname", None, detail="not tried: needs map-single")
    access = rungs.delegation.Access(False, 1, errno=errno.EROFS, detail="read-only")
    text = rungs.describe(rungs.Result("rootless-single-id", host, (failed, skipped), access, 12.0))
    assert "rung: rootless-single-id" in text
    assert "failed EPERM" in text and "fix: set procMount" in text
    assert "skipped" in text and "needs map-single" in text
    assert "rlimits only" in text  # no cgroup: limits are named as approximations


# ---- as a real unprivileged user ----------------------------------------------------------------


@needs_users
def test_user_with_subuids_gets_multi_id(user_source):
    user = users.ensure_user()
    host = rungs.read_host()
    if not shutil.which("newuidmap", path=probes.HELPER_PATH):
        pytest.skip("newuidmap is not installed (apt-get install uidmap): multi-id cannot be probed")
    if not rungs._sub_range("/etc/subuid", user.pw_name, user.pw_uid):
        pytest.skip(f"{user.pw_name} has no /etc/subuid entry")
    result = probe_as(user.pw_uid, user.pw_gid, user_source, home=user.pw_dir)
    assert result.rung == "rootless-multi-id", rungs.describe(result)
    assert result.host.uid == user.pw_uid != host.uid


@needs_users
def test_no_new_privs_defeats_newuidmap(user_source):
    user = users.ensure_user()
    result = probe_as(user.pw_uid, user.pw_gid, user_source, home=user.pw_dir, no_new_privs=True)
    assert result.rung == "rootless-single-id", rungs.describe(result)
    multi = result.probe("map-multi")
    assert multi.ok is False
    assert "no_new_privs" in multi.fix
    assert result.host.no_new_privs


@needs_users
def test_user_without_subuids_is_told_how_to_get_them(user_source):
    uid = next(u for u in range(54321, 60000) if not _has_passwd_entry(u))
    result = probe_as(uid, uid, user_source)
    assert result.rung == "rootless-single-id", rungs.describe(result)
    multi = result.probe("map-multi")
    assert multi.ok is False and multi.errno == errno.ENOENT
    assert "usermod --add-subuids" in multi.fix or "uidmap" in multi.fix


def _has_passwd_entry(uid: int) -> bool:
    import pwd

    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


@needs_users
def test_user_without_a_delegated_cgroup_gets_rlimits_and_a_fix(user_source):
    user = users.ensure_user()
    if any(os.path.isdir(f"/sys/fs/cgroup/{c}/{user.pw_name}") for c in ("memory", "pids", "cpu")):
        pytest.skip(f"{user.pw_name} has v1 cgroup dirs delegated on this host")
    result = probe_as(user.pw_uid, user.pw_gid, user_source, home=user.pw_dir)
    cgroup = result.probe("cgroups")
    assert cgroup.ok is False and cgroup.errno in (errno.EACCES, errno.EROFS), rungs.describe(result)
    assert "Delegate=yes" in cgroup.fix
    assert result.limits.startswith("rlimits")


@needs_users
@pytest.mark.skipif(not os.path.isdir("/sys/fs/cgroup/pids") or os.path.ismount("/sys/fs/cgroup/cgroup.procs"),
                    reason="needs cgroup v1 controllers at /sys/fs/cgroup/<controller> (the v2 case runs in the VM)")
def test_user_with_v1_dirs_from_root_gets_cgroup_limits(user_source):
    user = users.ensure_user()
    made = []
    try:
        for controller in ("memory", "pids", "cpu"):
            group = f"/sys/fs/cgroup/{controller}/{user.pw_name}"
            if os.path.exists(group):
                pytest.skip(f"{group} exists already: not ours to change")
            os.mkdir(group)
            made.append(group)
            for name in ("", "cgroup.procs", "tasks"):  # the delegation recipe in docs/jupyterhub.md
                os.chown(os.path.join(group, name) if name else group, user.pw_uid, user.pw_gid)
        result = probe_as(user.pw_uid, user.pw_gid, user_source, home=user.pw_dir)
    finally:
        for group in made:
            os.rmdir(group)
    assert result.cgroup.ok and result.cgroup.version == 1, rungs.describe(result)
    assert set(result.cgroup.controllers) == {"memory", "pids", "cpu"}
    assert result.limits.startswith("cgroup v1")
    assert not any(os.path.exists(g) for g in made)


# ---- inside an emulated locked-down pod ----------------------------------------------------------

POD_CASES = [
    # seccomp, unmasked /proc, expected rung, probes that must work, probes that must fail (with errno)
    ("containerd", False, "process-sandbox", ("sandbox", "seccomp"), {"userns": errno.EPERM}),
    ("crio", False, "rootless-single-id", ("userns", "mount", "overlay", "netns"),
     {"pidns": errno.EPERM, "uts": errno.EPERM}),
    ("unconfined", False, "rootless-single-id", ("userns", "mount", "overlay", "uts", "netns"),
     {"pidns": errno.EPERM}),
    ("unconfined", True, "rootless-single-id", ("userns", "mount", "overlay", "pidns", "uts", "netns"), {}),
]


def probe_in_pod(seccomp: str, unmasked_proc: bool) -> tuple[rungs.Result, object]:
    pod = bundle.Pod(seccomp=seccomp, unmasked_proc=unmasked_proc)
    ran = pod_run.run(pod, pod_run.python_argv("-m", "containerlab_magic.runtime.rungs"))
    assert ran.returncode in (0, 1), ran.stderr
    return rungs.Result.from_dict(json.loads(ran.stdout)), ran


@needs_pod
@pytest.mark.parametrize("seccomp, unmasked, rung, work, fail", POD_CASES,
                         ids=[f"{c[0]}-{'unmasked' if c[1] else 'masked'}" for c in POD_CASES])
def test_rung_in_a_locked_down_pod(seccomp, unmasked, rung, work, fail):
    result, _ = probe_in_pod(seccomp, unmasked)
    text = rungs.describe(result)
    assert result.rung == rung, text
    assert result.host.uid == 1000 and result.host.no_new_privs and result.host.cap_eff == 0
    for name in work:
        assert result.has(name), f"{name} should work in the {seccomp} pod:\n{text}"
    for name, err in fail.items():
        probe = result.probe(name)
        assert probe.ok is False and probe.errno == err and probe.fix, text
    cgroup = result.probe("cgroups")
    assert cgroup.ok is False and cgroup.errno == errno.EROFS  # /sys/fs/cgroup is read-only in a pod
    assert result.probe("map-multi").ok is False  # no_new_privs: never multi-id in a pod
    assert result.elapsed_ms < 5000  # recorded for the report; the budget is tens of ms


@needs_pod
def test_nothing_left_by_the_pods():
    import glob
    import tempfile

    scratch = os.path.join(tempfile.gettempdir(), "clab-pod-*")
    before = set(glob.glob(scratch))
    probe_in_pod("crio", False)
    assert set(glob.glob(scratch)) - before == set()  # bundle and runc state
    assert glob.glob("/sys/fs/cgroup/*/clabpod") + glob.glob("/sys/fs/cgroup/clabpod") == []
