"""H1: the default seccomp profile (Docker's), and the options that change it."""

from __future__ import annotations

import json

import pytest
from escape import attack, lab, run, escape_checks  # noqa: F401 - escape_checks: autouse

from containerlab_magic.runtime import ContainerSpec
from containerlab_magic.runtime.errors import SpecError

# A new user namespace would give the container a full capability set inside it
# (and with it the kernel's whole attack surface of namespaced capabilities).
USERNS = ["unshare", "-U", "true"]
CLONE3 = ("import ctypes, errno; libc = ctypes.CDLL(None, use_errno=True); "
          "r = libc.syscall(435, None, 0); print(errno.errorcode.get(ctypes.get_errno()) if r < 0 else 'ok')")


def test_a_nested_user_namespace_is_refused():
    assert attack(USERNS, off=("seccomp",)).exit_code == 0  # the attack works without the filter
    result = attack(USERNS)
    assert result.exit_code != 0 and b"Operation not permitted" in result.stderr


def test_clone3_says_enosys_so_libc_falls_back_to_a_filtered_clone():
    assert attack(["python3", "-c", CLONE3], image="host", off=("seccomp",)).stdout.strip() != b"ENOSYS"
    assert attack(["python3", "-c", CLONE3], image="host").stdout.strip() == b"ENOSYS"


def test_capability_gated_calls_follow_the_containers_capabilities():
    with lab() as engine:
        assert run(engine, USERNS, cap_add=("SYS_ADMIN",)).exit_code == 0  # Docker: CAP_SYS_ADMIN lifts it
        assert run(engine, ["grep", "Seccomp:", "/proc/self/status"], cap_add=("SYS_ADMIN",)).stdout.split()[1] == b"2"


def test_unconfined_and_a_profile_file():
    deny_mkdir = json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]})
    with lab() as engine:
        assert run(engine, USERNS, seccomp="unconfined").exit_code == 0
        result = run(engine, ["mkdir", "/tmp/x"], seccomp=deny_mkdir)
        assert result.exit_code != 0 and b"Permission denied" in result.stderr
        assert run(engine, ["mkdir", "/tmp/x"]).exit_code == 0


@pytest.mark.parametrize("fields, says", [
    ({"seccomp": "{not json"}, "invalid seccomp profile: not JSON"),
    ({"seccomp": json.dumps({"defaultAction": "SCMP_ACT_MAYBE"})}, "defaultAction 'SCMP_ACT_MAYBE'"),
    ({"seccomp": json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"]}]})},
     "syscalls[0].action"),
    ({"cap_add": ("FLY",)}, "unknown capability 'FLY' in --cap-add"),
    ({"cap_drop": ("CAP_NOPE",)}, "unknown capability 'CAP_NOPE' in --cap-drop"),
    ({"privileged": True, "seccomp": json.dumps({"defaultAction": "SCMP_ACT_ALLOW"})}, "drop --privileged"),
])
def test_bad_security_options_are_one_line_errors(fields, says):
    with pytest.raises(SpecError) as error:
        ContainerSpec(("true",), **fields)
    assert says in str(error.value) and "\n" not in str(error.value)


def test_a_capability_the_shim_lacks_is_refused_in_one_line_leaving_nothing():
    from containerlab_magic.runtime.errors import HostUnsupported
    from containerlab_magic.runtime.security import CAPABILITY_NUMBERS, bounding_set

    missing = [name for name, bit in CAPABILITY_NUMBERS.items() if not bounding_set() & (1 << bit)]
    if not missing:
        pytest.skip("this host's root holds every capability: nothing to refuse")
    with lab() as engine, pytest.raises(HostUnsupported) as error:
        engine.run(ContainerSpec(("true",), image="busybox", cap_add=(missing[0],)))
    assert "drop that --cap-add" in str(error.value) and "\n" not in str(error.value)


VSOCK = ("import socket\ntry:\n    socket.socket(40, socket.SOCK_STREAM)\n    print('opened')\n"
         "except OSError as e:\n    print(e.errno)")


def test_argument_filters_refuse_socket_families_docker_refuses():
    """socket(2) is allowed for every family but AF_ALG (38) and AF_VSOCK (40), as in Docker."""
    assert attack(["python3", "-c", VSOCK], image="host", seccomp="unconfined").stdout.strip() != b"1"
    assert attack(["python3", "-c", VSOCK], image="host").stdout.strip() == b"1"  # EPERM from the filter


def test_without_libseccomp_the_default_profile_is_refused_not_skipped(monkeypatch):
    """No libseccomp: a container that needs the filter gets one line naming the fix, never
    a silent run without it; an unconfined one still runs."""
    from containerlab_magic.runtime import security
    from containerlab_magic.runtime.errors import HostUnsupported
    from containerlab_magic.runtime.security import libseccomp, seccomp

    def missing():
        raise OSError(2, "libseccomp is not installed: install the libseccomp2 package")

    monkeypatch.setattr(libseccomp, "lib", missing)
    monkeypatch.setattr(security, "_default", [])
    monkeypatch.setattr(seccomp, "_cache", {})
    security.prepare()  # the shim still starts
    with pytest.raises(HostUnsupported) as error:
        security.policy_for(ContainerSpec(("true",)))
    assert "libseccomp2" in str(error.value) and "\n" not in str(error.value)
    assert security.policy_for(ContainerSpec(("true",), seccomp="unconfined")).seccomp is None
