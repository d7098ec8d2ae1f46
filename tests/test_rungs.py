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
import subprocess
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
    # (a fresh process when this test process has threads: other tests' engines may have left some)
    assert result.host.uid == 0 and result.how in ("fork", "fresh process")
    assert set(result.namespaces) == {"mnt", "uts", "ipc", "net", "pid", "cgroup"}


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


def _host(**changes) -> rungs.Host:
    import dataclasses

    base = rungs.Host(1000, "jovyan", True, 0, 0, 15000, False, None, None)
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize("err, host, words", [
    (errno.ENOSPC, _host(), "max_user_namespaces"),
    (errno.EPERM, _host(seccomp=2), "seccompProfile"),
    (errno.EPERM, _host(apparmor_restricts_userns=True), "apparmor_restrict_unprivileged_userns"),
    (errno.EINVAL, _host(), "CONFIG_USER_NS"),
])
def test_the_userns_fix_follows_the_cause(err, host, words):
    assert words in rungs.fix_for("userns", err, host)


def test_map_multi_fixes():
    assert "allowPrivilegeEscalation" in rungs.fix_for("map-multi", errno.EPERM, _host(no_new_privs=True))
    assert "usermod --add-subuids" in rungs.fix_for("map-multi", errno.ENOENT, _host(no_new_privs=False))
    assert "apt-get install uidmap" in rungs.fix_for("map-multi", errno.ENOENT, _host(),
                                                     "newuidmap/newgidmap are not installed")
    assert "CAP_SETFCAP" in rungs.fix_for("map-single", errno.EPERM, _host(uid=0))


def test_headline_names_the_rung_and_what_it_lacks():
    access = rungs.delegation.Access(False, 1, errno=errno.EROFS)
    lacking = (rungs.Probe("pidns", "p", False, errno.EPERM), rungs.Probe("map-multi", "m", False, errno.EPERM),
               rungs.Probe("cgroups", "c", False, errno.EROFS))
    line = rungs.headline(rungs.Result("rootless-single-id", _host(), lacking, access))
    assert line.startswith("isolation rung: rootless-single-id (without: own PID namespace, cgroup limits")
    assert "\n" not in line and "map-multi" not in line
    none = rungs.headline(rungs.Result("none", _host(), (), access))
    assert "cannot start containers" in none


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


UNIFIED = "/sys/fs/cgroup/unified"


@needs_users
@pytest.mark.skipif(not os.path.ismount(UNIFIED), reason="needs a v1/v2 hybrid host (cgroup2 at /sys/fs/cgroup/unified)")
def test_user_in_a_delegated_v2_group_of_a_hybrid_host(user_source):
    """systemd's Delegate= by hand: root makes a v2 group, gives it to the user and starts the
    user's process in it.  On a hybrid host that group has no controllers: kill and freeze,
    no limits, and the probe must say so."""
    user = users.ensure_user()
    group = os.path.join(UNIFIED, f"clab-delegated-{os.getpid()}")
    os.mkdir(group)
    try:
        for name in ("", "cgroup.procs", "cgroup.threads", "cgroup.subtree_control"):
            os.chown(os.path.join(group, name) if name else group, user.pw_uid, user.pw_gid)
        code = ("import os; open(%r, 'w').write(str(os.getpid())); " % os.path.join(group, "cgroup.procs")
                + "os.execvp('setpriv', ['setpriv', '--reuid=%d', '--regid=%d', '--clear-groups', 'env', '-i', "
                  "'PYTHONPATH=%s', 'HOME=%s', '%s', '-c', %r])" % (
                      user.pw_uid, user.pw_gid, user_source, user.pw_dir, users.SYSTEM_PYTHON, PROBE_AS_USER))
        ran = subprocess.run([users.SYSTEM_PYTHON, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
        assert ran.returncode == 0, ran.stderr
        result = rungs.Result.from_dict(json.loads(ran.stdout))
    finally:
        deadline = time.monotonic() + 5
        while True:  # the probe's process has exited; the kernel frees the group a moment later
            try:
                os.rmdir(group)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    if result.cgroup.version == 1:
        pytest.skip(f"{user.pw_name} has v1 groups of its own here, which the probe prefers")
    assert result.cgroup.ok and result.cgroup.version == 2, rungs.describe(result)
    assert result.cgroup.dirs == (group,) and result.cgroup.controllers == ()
    assert result.limits.startswith("rlimits") and "no controllers" in result.probe("cgroups").fix


# ---- inside an emulated locked-down pod ----------------------------------------------------------

POD_CASES = [
    # seccomp, unmasked /proc, own user namespace (hostUsers: false), uid,
    # expected rung, probes that must work, probes that must fail (with errno)
    ("containerd", False, False, 1000, "process-sandbox", ("sandbox", "seccomp"), {"userns": errno.EPERM}),
    ("crio", False, False, 1000, "rootless-single-id", ("userns", "mount", "overlay", "netns"),
     {"pidns": errno.EPERM, "uts": errno.EPERM}),
    ("unconfined", False, False, 1000, "rootless-single-id", ("userns", "mount", "overlay", "uts", "netns"),
     {"pidns": errno.EPERM}),
    ("unconfined", True, False, 1000, "rootless-single-id", ("userns", "mount", "overlay", "pidns", "uts", "netns"),
     {}),
    # deploy/z2jh/userns.yaml: hostUsers: false + procMount: Unmasked + Unconfined
    ("unconfined", True, True, 1000, "rootless-single-id", ("userns", "mount", "overlay", "pidns", "uts", "netns"),
     {}),
    # root of the pod's user namespace, capabilities dropped: may not map uid 0 (no CAP_SETFCAP)
    ("unconfined", True, True, 0, "process-sandbox", ("userns", "sandbox"), {"map-single": errno.EPERM}),
]


def probe_in_pod(seccomp: str, unmasked_proc: bool, own_userns: bool = False, uid: int = 1000):
    pod = bundle.Pod(seccomp=seccomp, unmasked_proc=unmasked_proc, host_users=not own_userns, uid=uid, gid=uid)
    ran = pod_run.run(pod, pod_run.python_argv("-m", "containerlab_magic.runtime.rungs"))
    assert ran.returncode in (0, 1), ran.stderr
    return rungs.Result.from_dict(json.loads(ran.stdout)), ran


def _pod_id(case) -> str:
    return f"{case[0]}-{'unmasked' if case[1] else 'masked'}{'-userns' if case[2] else ''}-uid{case[3]}"


@needs_pod
@pytest.mark.parametrize("seccomp, unmasked, own_userns, uid, rung, work, fail", POD_CASES,
                         ids=[_pod_id(c) for c in POD_CASES])
def test_rung_in_a_locked_down_pod(seccomp, unmasked, own_userns, uid, rung, work, fail):
    result, _ = probe_in_pod(seccomp, unmasked, own_userns, uid)
    text = rungs.describe(result)
    assert result.rung == rung, text
    assert result.host.uid == uid and result.host.no_new_privs and result.host.cap_eff == 0
    for name in work:
        assert result.has(name), f"{name} should work in the {seccomp} pod:\n{text}"
    for name, err in fail.items():
        probe = result.probe(name)
        assert probe.ok is False and probe.errno == err and probe.fix, text
    if rung.startswith("rootless"):  # what the start plan may unshare: exactly what worked
        assert set(result.namespaces) == {"user", "mnt", "ipc"} | {
            ns for ns, probe in (("pid", "pidns"), ("uts", "uts"), ("net", "netns")) if probe in work}
    else:
        assert result.namespaces == ()
    cgroup = result.probe("cgroups")
    assert cgroup.ok is False and cgroup.errno == errno.EROFS  # /sys/fs/cgroup is read-only in a pod
    assert not result.has("map-multi")  # no_new_privs: never multi-id in a pod
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


RUN_AS_USER = r"""
import os, subprocess, sys
env = dict(os.environ, CONTAINERLAB_STATE=sys.argv[1], CONTAINERLAB_DATA=sys.argv[2], CONTAINERLAB_DAEMON_LINGER="1")
for args in (["run", "busybox", "echo", "hi"], ["run", "--cpus", "0.5", "busybox", "true"]):
    r = subprocess.run([sys.executable, "-m", "containerlab_magic", *args], capture_output=True, text=True, env=env)
    print(r.returncode, r.stderr.strip().replace("\n", " | "))
"""


@needs_users
def test_an_unprivileged_user_is_told_in_one_line_and_nothing_is_left(user_source):
    """A user's run starts on the rootless rung (tests/test_rootless.py has the rest); limits
    with no cgroup to hold them are refused in one line (not an internal error), and
    nothing is left behind: no state, cgroup or process."""
    import pathlib
    import tempfile

    user = users.ensure_user()
    home = pathlib.Path(tempfile.mkdtemp(prefix="clab-user-home-"))  # (in /tmp: the user can reach it)
    os.chown(home, user.pw_uid, user.pw_gid)
    try:
        _told_in_one_line(user, home, user_source)
    finally:
        shutil.rmtree(home)


def _told_in_one_line(user, home, source: str) -> None:
    state, data = home / "state", home / "data"
    ran = users.run_as(user.pw_uid, user.pw_gid, source,
                       "import sys; sys.argv[1:] = [%r, %r]\n" % (str(state), str(data)) + RUN_AS_USER,
                       home=str(home))
    assert ran.returncode == 0, ran.stderr
    (plain, plain_error), (limited, limited_error) = [line.split(" ", 1) for line in ran.stdout.splitlines()]
    assert plain == "0" and plain_error == "", plain_error
    assert limited == "125" and "--cpus needs a cgroup" in limited_error, limited_error
    deadline = time.monotonic() + 10
    while subprocess.run(["pgrep", "-u", str(user.pw_uid)], capture_output=True).stdout and time.monotonic() < deadline:
        time.sleep(0.1)  # (its daemon shim lingers 1 s, then ends)
    assert not subprocess.run(["pgrep", "-u", str(user.pw_uid)], capture_output=True).stdout
    left = [n for n in os.listdir(state / "containers")] if (state / "containers").is_dir() else []
    assert left == []
    assert not [g for c in os.listdir("/sys/fs/cgroup") for g in
                (os.listdir(f"/sys/fs/cgroup/{c}/containerlab") if os.path.isdir(f"/sys/fs/cgroup/{c}/containerlab") else ())
                if os.path.isdir(os.path.join(f"/sys/fs/cgroup/{c}/containerlab", g))
                and os.stat(os.path.join(f"/sys/fs/cgroup/{c}/containerlab", g)).st_uid == user.pw_uid]
