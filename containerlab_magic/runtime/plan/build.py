"""The start plan: which steps a container's start takes, from its spec and the host.

    claim name -> state dir -> identity -> cgroup (create + limits) -> PID 1 (clone,
    or claim a warm spare) -> join cgroup -> [console] -> [network] -> [shaping]
    -> [log] -> state file -> go
    ... then in PID 1 (child.py): rootfs, mounts, pivot_root, loopback, wait for go,
    eth0, hostname, cgroup namespace, workdir, user, security, [init], exec

A spare made ahead of need runs the first steps of the same plan (`AHEAD`:
state dir, cgroup and, warm, PID 1 itself); the claim then skips their work.
"""

from __future__ import annotations

from . import steps as s

AHEAD_KINDS = ("state", "cgroup", "clone")


def build(spec, *, cgroups: bool, rootless: bool = False) -> list:
    """The shim's steps for `spec` on a host with (or without) writable cgroups, as root or not."""
    plan: list = [s.ClaimName(), s.StateDir(), s.Identity()]
    if cgroups:
        plan.append(s.Cgroup())
    plan.append(s.ClonePid1())
    if cgroups:
        plan.append(s.JoinCgroup())
    if spec.tty:
        plan.append(s.Console())
    if spec.on_bridge or spec.network.startswith("container:"):
        plan.append(s.Network())
    if spec.on_bridge and (spec.net_rate or spec.net_delay or spec.net_loss):
        plan.append(s.Shaping())
    if spec.ports and (rootless or not spec.on_bridge):  # rootless: pasta (the checks refused it as root)
        plan.append(s.Ports())
    if spec.detach:
        plan.append(s.Log())
    plan += [s.StateFile(), s.Go()]
    return plan


def ahead(*, cgroups: bool, warm: bool) -> list:
    """The first steps of every plan, run for a spare before any request names it."""
    plan: list = [s.StateDir()]
    if cgroups:
        plan.append(s.Cgroup())
    if warm:
        plan.append(s.ClonePid1())
    return plan
