"""`%cgroup`: a container's cgroup as a learner reads it, and its limits changed live.

A cgroup is a directory of the cgroup filesystem whose files are both the
limits (memory.max or memory.limit_in_bytes, pids.max, cpu.max or
cpu.cfs_quota_us) and the usage counted against them (see cgroups(7)).
`%cgroup NAME` shows the figures beside the files they come from;
`%cgroup NAME memory=128M` writes new limits (the commands layer's `update`,
as `containerlab-magic update`), and `net_rate=`/`net_delay=`/`net_loss=`
change the container's link shaping, which is tc on its veth, not a cgroup,
but a limit all the same (see tc(8)).
"""

from __future__ import annotations

import re

from . import commands
from . import display as show
from .runtime.errors import Conflict, SpecError

SETTING_KEYS = {"memory": "memory", "memory_swap": "memory_swap", "cpus": "cpus", "cpu_shares": "cpu_shares",
                "cpuset_cpus": "cpuset_cpus", "pids": "pids_limit", "pids_limit": "pids_limit",
                "blkio_weight": "blkio_weight"}
LINK_KEYS = ("net_rate", "net_delay", "net_loss")
SETTINGS_HELP = ("memory=128M memory_swap=256M cpus=1 cpu_shares=512 cpuset_cpus=0 pids=64 blkio_weight=100; "
                 "and the link of a container on a network: net_rate=1mbit net_delay=50ms net_loss=1%%")

# The flags the runtime's messages name, and the KEY= of %cgroup that sets each
FLAG_KEYS = {"--memory-swap": "memory_swap", "--memory": "memory", "--cpus": "cpus", "--cpu-shares": "cpu_shares",
             "--cpuset-cpus": "cpuset_cpus", "--pids-limit": "pids_limit", "--blkio-weight": "blkio_weight",
             "--net-rate": "net_rate", "--net-delay": "net_delay", "--net-loss": "net_loss"}
_FLAG_VALUE = re.compile(r"(--[a-z-]+)(?![-\w])(?: ('[^']*'|-1\b|\d[\w.%]*))?")


def report(engine, ref: str):
    """Usage against limits, and the cgroup files behind the figures."""
    usage = engine.stats(ref)
    group = engine.cgroups.open(usage["id"])
    if group is None:  # it ended between the two reads
        raise Conflict(f"container {ref} is not running: %cgroup NAME needs a running container")
    return show.cgroup_report(usage.get("name") or ref, usage, group.files())


def update(engine, ref: str, settings: list[str]):
    """KEY=VALUE settings -> the limits (and link) before and after, as a table."""
    from .runtime.spec import Limits

    values, link, typed = {}, {}, {}
    for item in settings:
        key, sep, value = item.partition("=")
        name = key.replace("-", "_")
        if sep and name in LINK_KEYS:
            link[name], typed[name] = value, key
            continue
        if not sep or name not in SETTING_KEYS:
            keys = sorted(set(SETTING_KEYS) - {"pids_limit"}) + list(LINK_KEYS)
            raise SpecError(f"%cgroup: {item!r} is not KEY=VALUE with KEY one of {', '.join(keys)}")
        values[SETTING_KEYS[name]], typed[SETTING_KEYS[name]] = value, key
    try:
        limits = Limits.parse(**values) if values else None
        link_before = engine.network_usage(ref).get("net_shape") if link else None
        before, after = commands.update(engine, ref, limits, **link)
    except SpecError as e:
        raise SpecError(as_typed(str(e), typed)) from None
    table = show.limits_change(ref, before, after)
    if link:
        table.rows.append(("link", show.link_shape(link_before),
                           show.link_shape(engine.network_usage(ref).get("net_shape"))))
    return table


def as_typed(message: str, typed: dict[str, str]) -> str:
    """A runtime message about `--memory 'banana'` -> about `memory='banana'`, as the user wrote it."""

    def swap(m: re.Match) -> str:
        key = FLAG_KEYS.get(m.group(1))
        if key is None:
            return m.group(0)
        word = typed.get(key) or ("pids" if key == "pids_limit" else key)
        return f"{word}={m.group(2) or ''}"

    return _FLAG_VALUE.sub(swap, message)


def kernel_report(engine):
    """The kernel's own cgroups (from /proc/self/cgroup) and the lab's subtree."""
    with open("/proc/self/cgroup") as f:
        mine = [line.strip().split(":", 2) for line in f if line.strip()]
    own = show.Table(("HIERARCHY", "CONTROLLERS", "PATH"), [tuple(m) for m in mine],
                     title="this kernel's own cgroup (/proc/self/cgroup)")
    mgr = engine.cgroups
    if mgr is None:
        from .runtime.cgroups import describe_host

        return show.Report([own, show.Text(f"no lab subtree: {describe_host().get('why_not')}")])
    info = mgr.describe()
    roots = info.get("root") or info.get("roots")
    lab = show.Table(("", ""), [("version", f"cgroup v{mgr.version} ({info.get('mode')})"), ("root", roots),
                                ("controllers", " ".join(sorted(info.get("controllers") or []))),
                                ("containers", len(mgr.list()))], title="the lab's subtree")
    return show.Report([own, lab])
