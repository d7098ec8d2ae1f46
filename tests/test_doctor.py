"""`doctor`: the rung, each probe with its errno, the fix for what is missing, and an exit
status that says whether any container can start; run as root, as a real user, and in
the emulated locked-down pods.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from containerlab_magic.runtime import doctor
from pod import bundle, run as pod_run, users

needs_pod = pytest.mark.skipif(pod_run.why_not() is not None, reason=str(pod_run.why_not()))
needs_users = pytest.mark.skipif(users.why_not() is not None, reason=str(users.why_not()))
PROBES = ("userns", "map-single", "map-multi", "mount", "overlay", "pidns", "uts", "netns", "seccomp", "sandbox",
          "cgroups")


def cgroup_line(report: str) -> str:
    return next(line for line in report.splitlines() if re.match(r"^\S+( E[A-Z]+)?\s+cgroups\s", line))


def test_checks_keep_their_shape_and_start_with_the_rung():
    found = doctor.checks()
    assert found[0].name == "rung" and found[0].ok == doctor.diagnose().can_start
    assert {"cgroups", "seccomp", "sandbox", "busybox image"} <= {c.name for c in found}
    for check in found:
        assert check.status in ("ok", "failed", "skipped")
        assert check.ok == (check.status == "ok")
        assert check.ok or check.fix or check.status == "skipped" or check.name == "rung"


@pytest.mark.skipif(os.geteuid() != 0, reason="the root rung")
def test_report_as_root():
    text = doctor.report()
    assert text.startswith("rung     root\n")
    assert re.search(r"^ok\s+root-ns\s", text, re.M)
    assert "probed in" in text


@pytest.mark.skipif(os.geteuid() != 0, reason="the root rung")
def test_the_module_exits_zero_where_containers_can_start():
    ran = subprocess.run([sys.executable, "-m", "containerlab_magic.runtime.doctor"], capture_output=True,
                         text=True, cwd=pod_run.CHECKOUT)
    assert ran.returncode == 0 and ran.stdout.startswith("rung     root"), ran.stderr


@needs_users
def test_a_user_who_cannot_write_cgroups_is_never_told_they_are_ok():
    user = users.ensure_user()
    if any(os.path.isdir(f"/sys/fs/cgroup/{c}/{user.pw_name}") for c in ("memory", "pids", "cpu")):
        pytest.skip(f"{user.pw_name} has cgroups delegated on this host")
    source = users.package_copy()
    try:
        ran = users.run_as(user.pw_uid, user.pw_gid, source,
                           "from containerlab_magic.runtime import doctor; print(doctor.report())",
                           home=user.pw_dir, no_new_privs=True)
    finally:
        shutil.rmtree(source)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("rung     rootless-single-id"), ran.stdout
    line = cgroup_line(ran.stdout)
    assert line.startswith("failed EACCES"), line
    assert "limits   rlimits only" in ran.stdout
    for name in PROBES:
        assert re.search(rf"^\S+( E[A-Z]+)?\s+{name}\s", ran.stdout, re.M), name


def doctor_in_pod(seccomp: str, unmasked: bool = False, rlimits: tuple = ()):
    pod = bundle.Pod(seccomp=seccomp, unmasked_proc=unmasked, rlimits=rlimits)
    return pod_run.run(pod, pod_run.python_argv("-m", "containerlab_magic.runtime.doctor"))


@needs_pod
@pytest.mark.parametrize("seccomp, unmasked, rung", [
    ("containerd", False, "process-sandbox"),
    ("crio", False, "rootless-single-id"),
    ("unconfined", False, "rootless-single-id"),
    ("unconfined", True, "rootless-single-id"),
])
def test_doctor_names_the_rung_in_each_pod(seccomp, unmasked, rung):
    ran = doctor_in_pod(seccomp, unmasked)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.startswith(f"rung     {rung}\n"), ran.stdout
    assert cgroup_line(ran.stdout).startswith("failed EROFS")  # the pod's /sys/fs/cgroup is read-only
    pidns = re.search(r"^(\S+)( E[A-Z]+)?\s+pidns\s", ran.stdout, re.M)
    expected = "skipped" if seccomp == "containerd" else ("ok" if unmasked else "failed")
    assert pidns.group(1) == expected, ran.stdout
    if expected == "failed":
        assert "procMount: Unmasked" in ran.stdout


@needs_pod
def test_a_pod_without_dev_net_tun_cannot_publish_ports():
    ran = doctor_in_pod("crio")
    line = re.search(r"^(\S+)\s+ports\s+(.*)$", ran.stdout, re.M)
    assert line and line.group(1) == "failed", ran.stdout
    assert "/dev/net/tun" in line.group(2) or "pasta" in line.group(2)


@needs_users
def test_a_user_with_pasta_and_tun_can_publish_ports():
    if not (shutil.which("pasta") or shutil.which("slirp4netns")):
        pytest.skip("neither pasta nor slirp4netns is installed (apt-get install passt)")
    if os.stat("/dev/net/tun").st_mode & 0o006 != 0o006:
        pytest.skip("/dev/net/tun is not open to every user here")
    user = users.ensure_user()
    source = users.package_copy()
    try:
        ran = users.run_as(user.pw_uid, user.pw_gid, source,
                           "from containerlab_magic.runtime import doctor; print(doctor.report())", home=user.pw_dir)
    finally:
        shutil.rmtree(source)
    assert re.search(r"^ok\s+ports\s+-p through (pasta|slirp4netns) on 127.0.0.1", ran.stdout, re.M), ran.stdout


@needs_pod
def test_doctor_exits_nonzero_when_nothing_can_start():
    # A pod whose user is at its process limit: no probe can even fork, so no rung is left.
    ran = doctor_in_pod("crio", rlimits=(("RLIMIT_NPROC", 1),))
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert ran.stdout.startswith("rung     none   (the lab cannot start containers here)")
    assert re.search(r"^failed EAGAIN\s+sandbox\s", ran.stdout, re.M), ran.stdout
    assert "RLIMIT_NPROC" in ran.stdout
