"""The other ways of starting /bin/true in a busybox rootfs, for benchmarks/startup.py.

Each contender is a `Contender`: `prepare()` once (raises `Unavailable` with the
reason when the tool is missing or broken), then `once()` per measured run
(raises `Unavailable` if a run fails), `close()` to remove what it made.
External tools run as a user would run them: the benchmark process forks and
execs the tool with subprocess and waits for it, so that cost is included.

What is touched on the host, and how it is put back:
- OCI bundles and the runc/crun state (--root) live in one temp dir, removed by close().
- runc and crun put their cgroup under the lab's subtree, /containerlab/bench-*;
  a `containerlab` parent they create in a hierarchy the lab itself does not use
  (devices, name=systemd) is removed again if it is still empty.
- crun 1.8 refuses a hybrid cgroup layout, so it runs inside one private mount
  namespace (unshare -m: every mount private) from which only the cgroup2 mount
  at /sys/fs/cgroup/unified is removed.  A `sleep` holds that namespace; each
  crun run enters it with nsenter(1).  `verify_crun_namespace()` checks the
  host still has the mount.
- The ip(8) sequence makes one netns and one veth pair per run and deletes both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time

from containerlab_magic.runtime import linux

UNIFIED = "/sys/fs/cgroup/unified"
FLOOR_FLAGS = (linux.CLONE_NEWPID | linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC
               | linux.CLONE_NEWNET | linux.CLONE_NEWCGROUP)


class Unavailable(Exception):
    """This contender cannot run here; the text says why."""


def run_tool(argv: list[str]) -> None:
    """fork+exec+wait one command as a user would; raise Unavailable if it fails."""
    try:
        proc = subprocess.run(argv, check=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=30)
    except FileNotFoundError:
        raise Unavailable(f"{argv[0]} is not installed (apt-get install -y {_package(argv[0])})") from None
    except subprocess.TimeoutExpired:
        raise Unavailable(f"{' '.join(argv[:3])} ... hung for 30 s") from None
    if proc.returncode != 0:
        last = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["(no message)"]
        raise Unavailable(f"{os.path.basename(argv[0])} exited {proc.returncode}: {last[0]}")


def _package(tool: str) -> str:
    return {"bwrap": "bubblewrap", "unshare": "util-linux", "nsenter": "util-linux",
            "ip": "iproute2"}.get(os.path.basename(tool), os.path.basename(tool))


class Contender:
    name = "?"

    def prepare(self) -> None:
        pass

    def once(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Command(Contender):
    """A fixed command line (bwrap, unshare + chroot, nsenter alone)."""

    def __init__(self, name: str, argv: list[str]):
        self.name, self.argv = name, argv

    def prepare(self) -> None:
        if shutil.which(self.argv[0]) is None:
            raise Unavailable(f"{self.argv[0]} is not installed (apt-get install -y {_package(self.argv[0])})")
        self.argv = [shutil.which(self.argv[0])] + self.argv[1:]
        run_tool(self.argv)

    def once(self) -> None:
        run_tool(self.argv)


def bwrap(rootfs: str) -> Command:
    return Command("bwrap --unshare-all", ["bwrap", "--unshare-all", "--bind", rootfs, "/",
                                           "--proc", "/proc", "--dev", "/dev", "/bin/true"])


def unshare_chroot(rootfs: str) -> Command:
    return Command("unshare + chroot", ["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net",
                                        "--mount-proc", "chroot", rootfs, "/bin/true"])


class Floor(Contender):
    """fork; child unshares the namespaces and forks PID 1, which chroots and execs.

    In-process (no tool to exec): the least any namespaced start can cost.
    """

    name = "floor: fork+unshare+exec"

    def __init__(self, rootfs: str):
        self.rootfs = rootfs

    def prepare(self) -> None:
        self.once()

    def once(self) -> None:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 126
            try:
                linux.unshare(FLOOR_FLAGS)
                pid1 = os.fork()
                if pid1 == 0:
                    try:
                        os.chroot(self.rootfs)
                        os.chdir("/")
                        os.execv("/bin/true", ["/bin/true"])
                    finally:
                        os._exit(127)
                code = os.waitstatus_to_exitcode(os.waitpid(pid1, 0)[1]) & 0xFF
            finally:
                os._exit(code)
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        if status != 0:
            raise Unavailable(f"fork+unshare+chroot+exec exited {status}")


class CgroupParents:
    """Remember which hierarchies lack /containerlab, to remove only the ones we made."""

    def __init__(self, keep: set[str]):
        self.keep = keep  # hierarchies the lab itself uses: never touched
        self.missing = [d for d in self._hierarchies() if not os.path.isdir(os.path.join(d, "containerlab"))]

    @staticmethod
    def _hierarchies() -> list[str]:
        base = "/sys/fs/cgroup"
        try:
            return [os.path.join(base, n) for n in sorted(os.listdir(base))
                    if os.path.isdir(os.path.join(base, n)) and not os.path.islink(os.path.join(base, n))]
        except OSError:
            return []

    def restore(self) -> list[str]:
        removed = []
        for hierarchy in self.missing:
            path = os.path.join(hierarchy, "containerlab")
            if os.path.realpath(hierarchy) in self.keep or not os.path.isdir(path):
                continue
            try:
                os.rmdir(path)  # only succeeds while empty
                removed.append(path)
            except OSError:
                pass
        return removed


class OCIRuntime(Contender):
    """`runc run` / `crun run` on a bundle whose root is the busybox rootfs itself."""

    def __init__(self, runtime: str, rootfs: str, workdir: str, via_nsenter: MountNamespace | None = None):
        self.runtime, self.rootfs, self.via = runtime, rootfs, via_nsenter
        self.name = f"{runtime} run"
        self.bundle = os.path.join(workdir, f"bundle-{runtime}")
        self.state = os.path.join(workdir, f"state-{runtime}")
        self.count = 0

    def prepare(self) -> None:
        exe = shutil.which(self.runtime)
        if exe is None:
            raise Unavailable(f"{self.runtime} is not installed (apt-get install -y {self.runtime})")
        os.makedirs(self.bundle)
        os.makedirs(self.state, mode=0o700)
        subprocess.run([exe, "spec"], cwd=self.bundle, check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        path = os.path.join(self.bundle, "config.json")
        with open(path) as f:
            config = json.load(f)
        config["process"]["terminal"] = False
        config["process"]["args"] = ["/bin/true"]
        config["root"] = {"path": self.rootfs, "readonly": False}
        # Under the lab's own subtree, never beside the host's groups.
        config["linux"]["cgroupsPath"] = f"/containerlab/bench-{self.runtime}-{os.getpid()}"
        with open(path, "w") as f:
            json.dump(config, f, indent=1)
        self.base = [exe, "--root", self.state]
        if self.via is not None:
            self.base = self.via.enter() + self.base
        self.once()

    def once(self) -> None:
        self.count += 1
        run_tool(self.base + ["run", "--bundle", self.bundle, f"bench-{os.getpid()}-{self.count}"])

    def close(self) -> None:
        """Delete what a failed run may have left (a clean run leaves nothing)."""
        for cid in os.listdir(self.state) if os.path.isdir(self.state) else []:
            subprocess.run(self.base + ["delete", "--force", cid], check=False, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _has_unified(pid: str) -> bool:
    with open(f"/proc/{pid}/mountinfo") as f:
        return any(line.split()[4] == UNIFIED for line in f)


class MountNamespace:
    """A private mount namespace without the cgroup2 mount, held by a sleeping process."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        for tool in ("unshare", "nsenter", "sh", "umount", "sleep"):
            if shutil.which(tool) is None:
                raise Unavailable(f"{tool} is not installed (apt-get install -y {_package(tool)})")
        self.host_had_unified = _has_unified("self")
        # unshare -m makes every mount private first: the umount cannot reach the host.
        script = f"if mountpoint -q {UNIFIED}; then umount {UNIFIED} || exit 1; fi; echo ready; exec sleep 100000"
        self.proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            err = self.proc.stderr.read().decode(errors="replace").strip()
            self.stop()
            raise Unavailable(f"cannot make a mount namespace without {UNIFIED}: {err or 'unknown error'}")

    def enter(self) -> list[str]:
        return [shutil.which("nsenter"), f"--mount=/proc/{self.proc.pid}/ns/mnt", "--"]

    def verify(self) -> str:
        """One line: the host keeps its cgroup2 mount, the private namespace has none."""
        host_before = self.host_had_unified
        host_now = _has_unified("self")
        inside = _has_unified(str(self.proc.pid))
        ok = host_now == host_before and not inside
        return (f"{'ok' if ok else 'PROBLEM'}: host {UNIFIED} {'still mounted' if host_now else 'absent'}"
                f" (was {'mounted' if host_before else 'absent'}), crun's namespace "
                f"{'still has it' if inside else 'has none'}")

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()  # our own sleep, by its pid
            self.proc.wait()
            for stream in (self.proc.stdout, self.proc.stderr):
                stream.close()
            self.proc = None


class IpBridge(Contender):
    """The bridge wiring of one container done with ip(8), then /bin/true in it, then teardown.

    Mirrors what the engine does per container for --net bridge: a netns, a
    veth pair with one end on the bridge and the other in the netns, an
    address, links up, a default route.  The bridge itself is the engine's
    (created once, like the engine's default network).
    """

    name = "ip netns + veth + exec + del"

    def __init__(self, bridge: str, address: str, gateway: str):
        self.bridge, self.address, self.gateway = bridge, address, gateway
        self.netns = f"clabbench{os.getpid()}"
        self.host_end = f"cbh{os.getpid()}"[:15]
        self.peer = f"cbc{os.getpid()}"[:15]
        self.setup_teardown: list[float] = []  # seconds, without the exec

    def _steps(self) -> tuple[list[list[str]], list[str], list[list[str]]]:
        ns, ip = self.netns, shutil.which("ip") or "ip"
        setup = [
            [ip, "netns", "add", ns],
            [ip, "link", "add", self.host_end, "type", "veth", "peer", "name", self.peer],
            [ip, "link", "set", self.peer, "netns", ns],
            [ip, "link", "set", self.host_end, "master", self.bridge, "up"],
            [ip, "-n", ns, "link", "set", self.peer, "name", "eth0"],
            [ip, "-n", ns, "addr", "add", self.address, "dev", "eth0"],
            [ip, "-n", ns, "link", "set", "eth0", "up"],
            [ip, "-n", ns, "link", "set", "lo", "up"],
            [ip, "-n", ns, "route", "add", "default", "via", self.gateway],
        ]
        run = [ip, "netns", "exec", ns, "/bin/true"]
        teardown = [[ip, "link", "del", self.host_end], [ip, "netns", "del", ns]]
        return setup, run, teardown

    def prepare(self) -> None:
        if shutil.which("ip") is None:
            raise Unavailable("ip is not installed (apt-get install -y iproute2)")
        self.once()

    def once(self) -> None:
        setup, run, _ = self._steps()
        t0 = time.perf_counter()
        try:
            for argv in setup:
                run_tool(argv)
            t1 = time.perf_counter()
            run_tool(run)
            t2 = time.perf_counter()
        except Unavailable:
            self.close()
            raise
        self.close()
        self.setup_teardown.append((t1 - t0) + (time.perf_counter() - t2))

    def close(self) -> None:
        _, _, teardown = self._steps()
        for argv in teardown:
            subprocess.run(argv, check=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)


def rootfs_snapshot(rootfs: str) -> set[tuple]:
    """(path, mode, size, mtime) of every entry: to show the shared rootfs was not changed."""
    entries = set()
    for dirpath, dirnames, filenames in os.walk(rootfs):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            entries.add((os.path.relpath(path, rootfs), st.st_mode, st.st_size, st.st_mtime_ns))
    return entries


def workdir() -> str:
    return tempfile.mkdtemp(prefix="clab-startup-bench-")
