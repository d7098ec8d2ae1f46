"""Published ports without root: pasta(1) splices host loopback into a container's namespace.

A rootless container has a network namespace of its own with only loopback (its
user namespace owns it; no bridge can be made without CAP_NET_ADMIN on the host).
`-p HOST:CONTAINER` there is served by pasta, of the passt project: run as the
user, it joins the container's user and network namespaces (`--userns`, `--netns`),
binds HOST on the host address asked for (127.0.0.1 unless given) and connects each
accepted connection to CONTAINER on the namespace's loopback (its splice path), so
the command's server needs no route and gets none: nothing inside can reach out.

    pasta -q -t 127.0.0.1/8080:80 -u none -T none -U none --userns ... --netns ... -P PIDFILE

pasta daemonizes once its ports are bound; the shim (a subreaper) inherits the
daemon, tracks it by pidfd and ends it with the container (it would otherwise
keep the namespace, and the port, alive).  Measured on this kind of host in
../shared/notes/rootless-and-pods.md, section 1d.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

from ..errors import HostUnsupported, SpecError

HELPER_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"
NS_IFNAME = "pasta0"


def binary() -> str:
    found = shutil.which("pasta", path=HELPER_PATH)
    if found is None:
        raise HostUnsupported("-p needs pasta in a rootless lab (no bridge can be made without root): install it "
                              "with `apt-get install passt`, or add `passt` to binder/apt.txt")
    return found


def argv(pid: int, ports, pidfile: str) -> list[str]:
    specs = {"tcp": [], "udp": []}
    for p in ports:
        specs[p.protocol] += ["-t" if p.protocol == "tcp" else "-u", f"{p.host_ip}/{p.host_port}:{p.container_port}"]
    return [binary(), "-q", *specs["tcp"], *specs["udp"], *([] if specs["tcp"] else ["-t", "none"]),
            *([] if specs["udp"] else ["-u", "none"]), "-T", "none", "-U", "none",
            "-I", NS_IFNAME,  # its tap (left down) must not take the name eth0, a bridge's link
            "--userns", f"/proc/{pid}/ns/user", "--netns", f"/proc/{pid}/ns/net", "-P", pidfile]


class Forwarder:
    """One container's pasta daemon."""

    def __init__(self, pid: int, pidfd: int):
        self.pid, self.pidfd = pid, pidfd

    @classmethod
    def start(cls, container_pid: int, ports, state_dir: str) -> "Forwarder":
        pidfile = os.path.join(state_dir, "pasta.pid")
        command = argv(container_pid, ports, pidfile)
        ran = subprocess.run(command, capture_output=True, text=True, cwd="/", timeout=10,
                             env={"PATH": HELPER_PATH, "LANG": "C.UTF-8"})
        if ran.returncode != 0:
            why = (ran.stderr.strip().splitlines() or [f"exit {ran.returncode}"])[-1]
            published = ", ".join(f"{p.host_ip}:{p.host_port}" for p in ports)
            raise SpecError(f"cannot publish {published} ({why}): is the port in use? choose another with -p")
        with open(pidfile) as f:
            pid = int(f.read().strip())
        os.unlink(pidfile)
        return cls(pid, os.pidfd_open(pid))

    def stop(self) -> None:
        """End the daemon and reap it (it is our child now: we are a subreaper)."""
        if self.pidfd < 0:
            return
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        os.close(self.pidfd)
        self.pidfd = -1
