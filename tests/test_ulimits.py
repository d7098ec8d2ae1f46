"""--ulimit and --group-add (docker run's): set in the container before its capabilities
drop, on PID 1 and on exec'd processes, through the CLI and the OCI runtime's rlimits and
additionalGids; bad values are one line and leave nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import needs_root

from containerlab_magic.runtime.spec import ContainerSpec, SpecError, parse_ulimit

pytestmark = needs_root


def cli(*args: str, state) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "containerlab_magic", *args], capture_output=True, text=True,
                          cwd="/", timeout=60, env=dict(os.environ, CONTAINERLAB_STATE=str(state / "state"),
                                                        CONTAINERLAB_DATA=str(state / "data"),
                                                        CONTAINERLAB_DAEMON_LINGER="1"))


@pytest.fixture(scope="module")
def home(tmp_path_factory, module_no_leaks):
    return tmp_path_factory.mktemp("ulimits")


def test_ulimit_sets_soft_and_hard_and_root_may_raise_them(home):
    ran = cli("run", "--ulimit", "nofile=100:200", "--ulimit", "core=-1", "busybox", "sh", "-c",
              "ulimit -n; ulimit -Hn; ulimit -c", state=home)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["100", "200", "unlimited"]
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    above = hard + 1 if hard != resource.RLIM_INFINITY else 1 << 20
    with open("/proc/sys/fs/nr_open") as f:
        if above > int(f.read()):
            pytest.skip("the kernel's nr_open is below the test's limit")
    ran = cli("run", "--ulimit", f"nofile={above}:{above}", "busybox", "sh", "-c", "ulimit -Hn", state=home)
    # Whether root may raise it here: a host that is itself a container may hold no CAP_SYS_RESOURCE.
    may = subprocess.run([sys.executable, "-I", "-c", "import resource; resource.setrlimit(resource.RLIMIT_NOFILE, "
                          f"({above}, {above}))"], capture_output=True, cwd="/").returncode == 0
    if may:
        assert ran.returncode == 0 and ran.stdout.strip() == str(above), ran.stderr
    else:
        assert ran.returncode == 125 and f"the hard limit here is {hard}" in ran.stderr, ran.stderr
        assert len(ran.stderr.strip().splitlines()) == 1


def test_an_exec_gets_the_containers_ulimits_and_groups(home):
    assert cli("run", "-d", "--name", "lim", "--ulimit", "nofile=77:88", "--group-add", "tty", "--group-add", "1234",
               "busybox", "sleep", "60", state=home).returncode == 0
    try:
        ran = cli("exec", "lim", "sh", "-c", "ulimit -n; ulimit -Hn; id -G", state=home)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.split() == ["77", "88", "0", "5", "1234"]
    finally:
        assert cli("rm", "-f", "lim", state=home).returncode == 0


def test_group_add_by_name_and_number_with_user(home):
    ran = cli("run", "--user", "65534:65534", "--group-add", "daemon", "--group-add", "44", "busybox", "id", "-G",
              state=home)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["65534", "1", "44"]


@pytest.mark.parametrize("args, says", [
    (["--ulimit", "nofile=5:2"], "the soft limit is above the hard one"),
    (["--ulimit", "bogus=1"], "unknown --ulimit 'bogus'"),
    (["--ulimit", "nofile"], "write NAME=SOFT[:HARD]"),
    (["--ulimit", "nofile=1", "--ulimit", "nofile=2"], "each limit once"),
    (["--group-add", "no such"], "invalid --group-add"),
    (["--group-add", "nosuchgroup"], "--group-add nosuchgroup: no such group in the image's /etc/group"),
], ids=["soft-above-hard", "unknown", "no-value", "twice", "bad-name", "unknown-group"])
def test_bad_values_are_one_line(home, args, says):
    ran = cli("run", *args, "busybox", "true", state=home)
    assert ran.returncode == 125, ran
    assert says in ran.stderr and len(ran.stderr.strip().splitlines()) == 1, ran.stderr
    assert "Traceback" not in ran.stderr
    assert cli("ps", "-a", "-q", state=home).stdout.strip() == ""


def test_the_spec_round_trips_and_checks():
    spec = ContainerSpec(["true"], ulimits=[parse_ulimit("nproc=10:20"), ["stack", -1, -1]], group_add=[44])
    assert spec.ulimits == (("nproc", 10, 20), ("stack", -1, -1)) and spec.group_add == ("44",)
    assert ContainerSpec.from_json(spec.to_json()) == spec
    with pytest.raises(SpecError):
        ContainerSpec(["true"], ulimits=[("nofile", True, 3)])
