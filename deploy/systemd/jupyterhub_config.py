# A single-host JupyterHub whose users get cgroup limits in the lab (the rootless rungs
# with a delegated cgroup v2 subtree). Needs a cgroup v2 host (systemd's unified
# hierarchy) and jupyterhub-systemdspawner. See docs/jupyterhub.md.
c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

c.JupyterHub.spawner_class = "systemdspawner.SystemdSpawner"

# Each user's server is a transient systemd unit running as that user. Delegate=yes makes
# systemd hand the unit's cgroup to the user: the lab then makes one group per container
# under it and writes memory.max, pids.max and cpu.max there. The controllers listed are
# the ones the lab uses.
c.SystemdSpawner.unit_extra_properties = {"Delegate": "cpu cpuset io memory pids"}

# The unit's own limits: the ceiling for everything the user's containers use together.
c.SystemdSpawner.mem_limit = "4G"
c.SystemdSpawner.cpu_limit = 2.0

# A private /tmp per server (the lab's fallback state directory when XDG_RUNTIME_DIR is unset).
c.SystemdSpawner.isolate_tmp = True
