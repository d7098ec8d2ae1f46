"""The security steps in the start plan: explain names them, warm spares keep to the default.

Not attacks (those are the test_escape_* files): checks that the policy goes
where the plan says.  A container's keyring, capabilities and seccomp filter
are its PID 1's last steps (child.py -> security.apply), each a record of
explain; a warm PID 1 is made with the default policy, so a container with
another policy never claims one; --privileged lifts the device allowlist in
the cgroup step.
"""

from __future__ import annotations

import os

from escape import escape_checks  # noqa: F401 - autouse: root, nothing left behind

from containerlab_magic.runtime import ContainerSpec, Engine
from containerlab_magic.runtime.security import DEFAULT_MASK, CAPABILITY_NUMBERS, policy_for, prepare
from containerlab_magic.runtime.shim.spares import SparePool
from containerlab_magic.runtime.state import wait_for

CAP_NET_ADMIN = 1 << CAPABILITY_NUMBERS["NET_ADMIN"]
STATUS = ["sh", "-c", "grep -E '^(CapEff|Seccomp):' /proc/self/status"]


def _status(result) -> dict[str, str]:
    return dict(line.split(":\t") for line in result.stdout.decode().splitlines())


def _pid1_steps(box) -> list[tuple[str, str]]:
    return [(r.step, r.description) for r in box.explain() if r.side == "container"]


def test_explain_names_keyring_privileges_and_seccomp_last():
    with Engine(prewarm=False) as engine:
        box = engine.run(ContainerSpec(tuple(STATUS), image="busybox"), explain=True)
        assert box.wait(30).exit_code == 0
        steps = _pid1_steps(box)
        kinds = [k for k, _ in steps]
        assert kinds[kinds.index("user"):] == ["user", "keyring", "security", "seccomp", "exec"], kinds
        text = dict(steps)
        assert "session keyring" in text["keyring"] and "Docker's 14" in text["security"]
        # Only execve reads the bounding set: a new PID 1 drops it before it waits for the go
        assert kinds.index("bounding") < kinds.index("wait") and "Docker's 14" in text["bounding"]
        assert text["seccomp"].startswith("load the seccomp filter (") and "last" in text["seccomp"]

        box = engine.run(ContainerSpec(tuple(STATUS), image="busybox", seccomp="unconfined"), explain=True)
        result = box.wait(30)
        assert _status(result)["Seccomp"].strip() == "0"  # the record says what happened: no filter
        assert "seccomp" not in [k for k, _ in _pid1_steps(box)]


def test_dry_run_lists_the_security_steps():
    with Engine(prewarm=False) as engine:
        plan = engine.plan(ContainerSpec(("true",), image="busybox", cap_add=("NET_ADMIN",)))
        steps = {r.step: r.description for r in plan if r.side == "container"}
        assert "CAP_NET_ADMIN" in steps["bounding"] and "keyring" in steps["keyring"]
        assert "Docker's default profile" in steps["seccomp"]
        plan = engine.plan(ContainerSpec(("true",), image="busybox", privileged=True))
        by_kind = {r.step: r.description for r in plan}
        assert by_kind["seccomp"] == "no seccomp filter (--privileged)"
        assert "every device (--privileged)" in by_kind["cgroup"]


def test_only_the_default_policy_may_claim_a_warm_spare():
    prepare()
    plain = ContainerSpec(("true",), image="busybox", network="none")
    assert SparePool.key_for(plain, policy_for(plain)) == ("busybox", "none")
    for other in (dict(cap_add=("NET_ADMIN",)), dict(cap_drop=("CHOWN",)), dict(seccomp="unconfined"),
                  dict(privileged=True), dict(no_new_privileges=False)):
        spec = ContainerSpec(("true",), image="busybox", network="none", **other)
        assert SparePool.key_for(spec, policy_for(spec)) is None, other


def test_a_container_with_its_own_capabilities_starts_cold_next_to_a_warm_spare():
    with Engine(prewarm=True) as engine:
        plain = ContainerSpec(tuple(STATUS), image="busybox", network="none")
        engine.run(plain).wait(30)  # this kind is wanted now: a warm PID 1 is made when quiet
        assert wait_for(lambda: _has_warm_spare(engine), 10), "no warm spare was made"
        box = engine.run(ContainerSpec(tuple(STATUS), image="busybox", network="none", cap_add=("NET_ADMIN",)),
                         explain=True)
        result = box.wait(30)
        clone = next(r.description for r in box.explain() if r.step == "clone")
        assert not clone.startswith("claim the warm"), clone
        assert int(_status(result)["CapEff"], 16) == DEFAULT_MASK | CAP_NET_ADMIN
        box = engine.run(plain, explain=True)  # the spare was kept for its own kind
        result = box.wait(30)
        assert next(r.description for r in box.explain() if r.step == "clone").startswith("claim the warm")
        status = _status(result)
        assert int(status["CapEff"], 16) == DEFAULT_MASK and status["Seccomp"].strip() == "2"


def _has_warm_spare(engine) -> bool:
    import json

    root = os.path.join(engine.state_root, "containers")
    for cid in os.listdir(root):
        try:
            with open(os.path.join(root, cid, "state.json")) as f:
                state = json.load(f)
        except (OSError, ValueError):
            continue
        if state.get("status") == "spare" and state.get("pid") and state.get("shim_pid") == engine.shim_pid:
            return True
    return False
