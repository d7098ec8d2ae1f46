"""The container's root filesystem: a plan of typed mount steps, then one loop.

How it works (mount_namespaces(7), overlayfs docs, pivot_root(2)):

1. In the container's new mount namespace, every host mount is made a *slave*,
   so nothing we mount propagates back to the host.
2. A tmpfs holds the container's writable layer (its size is --storage-size);
   an overlay puts it on top of the image's read-only layers.  Because both
   exist only in the container's mount namespace, they vanish with it: there
   is nothing to unmount or delete when the container ends.
3. /proc, a minimal /dev, a read-only /sys and a fresh /tmp are mounted in;
   runc's masked paths get /dev/null or an empty read-only tmpfs on top, and
   its read-only paths are remounted read-only.
4. pivot_root makes the overlay the root, and the old root is detached.

Like bubblewrap, the plan is data: `plan()` returns steps that can be printed
(`containerlab-magic run --explain`) and tested without root; `execute()` runs them.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from . import linux
from .binds import BindSource, SecureBind, flags_of
from .linux import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT
from .security import guards

from .kernel_paths import MASKED_PATHS, NEWER_MASKED_PATHS, READONLY_PATHS  # noqa: F401 (their home before)

# name, type, major, minor (all harmless character devices, as in the OCI default).
DEVICES = (
    ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0),
)
DEV_LINKS = (
    ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx"), ("core", "/proc/kcore"),
)


def secure_join(root: str, path: str) -> str:
    """Resolve `path` as if `root` were /, following symlinks without leaving root.

    An image may hold a symlink like /data -> /etc; resolved naively before
    pivot_root it would point at the *host's* /etc.
    """
    parts = [p for p in path.split("/") if p]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            target = os.readlink(candidate)
        except OSError:
            resolved.append(part)
            continue
        hops += 1
        if hops > 40:
            raise OSError(errno.ELOOP, "too many symlinks", path)
        if target.startswith("/"):
            resolved = []
        parts = [p for p in target.split("/") if p] + parts
    return os.path.join(root, *resolved)


# Below these, every path is on a filesystem we just mounted (proc, our tmpfs
# /dev, sysfs): the image cannot have planted a symlink there.
FRESH = ("/proc/", "/dev/", "/sys/")


def resolve(root: str, path: str) -> str:
    """Where `path` of the container is now: secure_join unless it is in a fresh mount."""
    if path.startswith(FRESH):
        return root + path
    return secure_join(root, path)


@dataclass(frozen=True)
class Mount:
    source: str | None
    target: str  # path inside the container
    fstype: str | None
    flags: int = 0
    data: str | None = None
    optional: bool = False  # skip when the target is missing (masked paths)

    def run(self, root: str) -> None:
        target = resolve(root, self.target)
        if self.optional and not os.path.lexists(target):
            return
        linux.mount(self.source, target, self.fstype, self.flags, self.data)

    def __str__(self) -> str:
        what = self.fstype or f"bind {self.source}"
        return f"mount {what} on {self.target}" + (f" ({self.data})" if self.data else "")


@dataclass(frozen=True)
class Remount:
    """Change flags of an existing mount (bind remount: per mount point)."""

    target: str
    flags: int
    optional: bool = False

    def run(self, root: str) -> None:
        target = resolve(root, self.target)
        if self.optional and not os.path.lexists(target):
            return
        # With the flags it has: a bind remount sets them all, and would clear noexec and
        # the rest, which a user namespace refuses (EPERM: they are locked) and root should not do.
        linux.mount(None, target, None, MS_REMOUNT | MS_BIND | self.flags | flags_of(target))

    def __str__(self) -> str:
        return f"remount {self.target} read-only" if self.flags & MS_RDONLY else f"remount {self.target}"


@dataclass(frozen=True)
class ReadOnly:
    """Bind a path of the container's own /proc over itself, then make it read-only."""

    target: str

    def run(self, root: str) -> None:
        path = resolve(root, self.target)
        if not os.path.lexists(path):
            return
        linux.mount(path, path, None, MS_BIND | MS_REC)
        linux.mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)

    def __str__(self) -> str:
        return f"make {self.target} read-only"


@dataclass(frozen=True)
class MakeTarget:
    """Create a mount point (dir or empty file) inside the rootfs if missing."""

    target: str
    is_dir: bool = True

    def run(self, root: str) -> None:
        path = resolve(root, self.target)
        if os.path.lexists(path):
            return
        if self.is_dir:
            os.makedirs(path, 0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))

    def __str__(self) -> str:
        return f"mkdir {self.target}" if self.is_dir else f"touch {self.target}"


@dataclass(frozen=True)
class TmpDir:
    """A world-writable sticky directory in the writable layer (mode 1777, as /tmp is)."""

    target: str

    def run(self, root: str) -> None:
        path = resolve(root, self.target)
        os.makedirs(path, 0o755, exist_ok=True)
        if stat.S_IMODE(os.stat(path).st_mode) != 0o1777:  # (a chmod would copy it up for nothing)
            os.chmod(path, 0o1777)

    def __str__(self) -> str:
        return f"mkdir -m 1777 {self.target} in the writable layer"


@dataclass(frozen=True)
class Device:
    name: str
    major: int
    minor: int

    def run(self, root: str) -> None:
        os.mknod(os.path.join(root, "dev", self.name), 0o666 | stat.S_IFCHR, os.makedev(self.major, self.minor))
        os.chmod(os.path.join(root, "dev", self.name), 0o666)  # mknod honours the umask

    def __str__(self) -> str:
        return f"mknod /dev/{self.name} c {self.major} {self.minor}"


@dataclass(frozen=True)
class BindDevice:
    """A host device node bound onto an empty file (a user namespace cannot mknod)."""

    name: str

    def run(self, root: str) -> None:
        path = os.path.join(root, "dev", self.name)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o666))
        linux.mount("/dev/" + self.name, path, None, MS_BIND)

    def __str__(self) -> str:
        return f"bind the host's /dev/{self.name} (mknod needs real root)"


@dataclass(frozen=True)
class UserSysfs:
    """/sys in a user namespace: a sysfs of its own when the kernel allows (the namespace
    owns its network namespace, and no mount of sysfs is partly hidden, as a pod's masked
    /sys is), else the host's /sys bound read-only."""

    own_net: bool

    def run(self, root: str) -> None:
        target = os.path.join(root, "sys")
        if self.own_net:
            try:
                linux.mount("sysfs", target, "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY)
                return
            except PermissionError:
                pass
        linux.mount("/sys", target, None, MS_BIND | MS_REC)
        linux.mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | flags_of(target))

    def __str__(self) -> str:
        return ("mount sysfs on /sys read-only (else bind the host's)" if self.own_net
                else "bind the host's /sys read-only (no network namespace of its own)")


@dataclass(frozen=True)
class Symlink:
    path: str
    target: str

    def run(self, root: str) -> None:
        os.symlink(self.target, os.path.join(root, self.path.lstrip("/")))

    def __str__(self) -> str:
        return f"ln -s {self.target} {self.path}"


def plan(image, spec, state_dir: str | None, userns=None) -> list:
    """Steps that build the container's view below the overlay root (userns: a
    rootless.UserNs, whose PID 1 cannot make devices or, without a network namespace
    of its own, a sysfs)."""
    steps: list = []
    # Host directories of the image (host image: /usr, ...), read-only, no devices.
    for src in image.binds:
        steps += [Mount(src, src, None, MS_BIND | MS_REC), SecureBind(src, read_only=True)]
    if userns is not None and not userns.pid:
        # No PID namespace of its own (a pod's masked /proc: the kernel refuses a fresh proc
        # while no fully visible one is mounted): the pod's /proc, masks and all.
        steps.append(Mount("/proc", "/proc", None, MS_BIND | MS_REC))
    else:
        steps.append(Mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC))
    steps += _dev_steps(userns is not None)
    if userns is not None:
        steps.append(UserSysfs(own_net=userns.net and (spec.network == "none" or spec.on_bridge)))
    else:
        steps.append(Mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY))
    # One storage budget per container (--storage-size, else storage_budget's default):
    # /tmp is a directory of the writable layer, unless the root is read-only; then it
    # is a tmpfs of that size.
    if spec.read_only:
        budget = storage_budget(spec.limits.storage_size)
        tmp_size = f",size={budget}" if budget else ""
        steps.append(Mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777" + tmp_size))
    else:
        steps.append(TmpDir("/tmp"))
    if state_dir:
        # Read-only: the host rewrites them in place (network/hosts.py); written from
        # inside they would grow a host file past --storage-size.
        for name in ("hosts", "hostname"):
            steps += [MakeTarget("/etc/" + name, is_dir=False),
                      Mount(os.path.join(state_dir, name), "/etc/" + name, None, MS_BIND),
                      Remount("/etc/" + name, MS_NOSUID | MS_NODEV | MS_NOEXEC
                              | (0 if guards.disabled("readonly-hosts") else MS_RDONLY))]
    for m in spec.mounts:
        steps += [MakeTarget(m.target, os.path.isdir(m.source)),
                  BindSource(m.source, m.target), SecureBind(m.target, m.read_only)]
    for path in MASKED_PATHS + (() if guards.disabled("masked-paths") else NEWER_MASKED_PATHS):
        if path in ("/sys/firmware", "/sys/devices/virtual/powercap", "/proc/acpi", "/proc/asound", "/proc/scsi"):
            steps.append(Mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0", optional=True))
        else:
            steps.append(Mount("/dev/null", path, None, MS_BIND, optional=True))
    steps += [ReadOnly(path) for path in READONLY_PATHS]
    if spec.read_only:
        steps.append(Remount("/", MS_RDONLY | MS_NODEV))
    return steps


def _dev_steps(userns: bool = False) -> list:
    # /dev is a small tmpfs of harmless devices, read-only once populated: with
    # every writable filesystem mounted nodev, a CAP_MKNOD process cannot make
    # a usable device node anywhere.  In a user namespace the nodes are the host's, bound.
    steps: list = [Mount("tmpfs", "/dev", "tmpfs", MS_NOSUID, "mode=755,size=65536")]
    if userns:
        steps += [BindDevice(name) for name, _, _ in DEVICES]
    else:
        steps += [Device(name, major, minor) for name, major, minor in DEVICES]
    steps += [Symlink("/dev/" + name, target) for name, target in DEV_LINKS]
    steps += [MakeTarget("/dev/pts"), MakeTarget("/dev/shm"), MakeTarget("/dev/mqueue")]
    steps += [
        # (gid 5, tty, is not mapped in a single-id user namespace: the terminal's group is then root's)
        Mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=0620" + ("" if userns else ",gid=5")),
        Mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=67108864"),
        Mount("mqueue", "/dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC),
        Remount("/dev", MS_RDONLY | MS_NOSUID),
    ]
    return steps


DEFAULT_STORAGE = 1 << 30
_ram: list[int] = []


def _quarter_of_ram() -> int:
    if not _ram:  # read once, in the shim (plan() runs there before any clone)
        with open("/proc/meminfo") as f:
            _ram.append(int(next(line.split()[1] for line in f if line.startswith("MemTotal:"))) * 1024)
    return _ram[0] // 4


def storage_budget(storage_size: int | None) -> int | None:
    """Bytes for the writable layer and for /tmp (each a tmpfs, so host memory): --storage-size,
    else 1 GiB (a quarter of the RAM on a small host), not a tmpfs's default of half the
    host's RAM each.  CONTAINERLAB_DEFAULT_STORAGE (bytes, or with k/M/G) changes the
    default; 0 gives the tmpfs default back."""
    if storage_size:
        return storage_size
    from .spec import parse_size

    text = os.environ.get("CONTAINERLAB_DEFAULT_STORAGE")
    if text is None:
        return min(DEFAULT_STORAGE, _quarter_of_ram())
    return parse_size(text, "CONTAINERLAB_DEFAULT_STORAGE") or None


def mount_root(image, stage: str, storage_size: int | None, userxattr: bool = False) -> str:
    """Overlay the image's layers with a tmpfs writable layer; return the new root.
    storage_size is the budget the shim worked out (storage_budget): None, no size.
    userxattr: in a user namespace, where overlay's trusted.* xattrs do not exist."""
    size = f",size={storage_size}" if storage_size else ""
    linux.mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755" + size)
    upper, work, root = (os.path.join(stage, d) for d in ("upper", "work", "root"))
    for d in (upper, work, root):
        os.mkdir(d, 0o755)
    lower = ":".join(image.layers)
    linux.mount("overlay", root, "overlay", MS_NODEV,
                f"lowerdir={lower},upperdir={upper},workdir={work}" + (",userxattr" if userxattr else ""))
    return root


def execute(steps: list, root: str, timeline=None) -> None:
    for step in steps:
        try:
            step.run(root)
        except OSError as e:
            raise OSError(e.errno, f"{step}: {os.strerror(e.errno or 0)}") from None
        if timeline is not None:
            timeline.mark("mount", str(step))


def describe_root(image, storage_size: int | None, userxattr: bool = False) -> str:
    size = f" of {storage_size} bytes" if storage_size else ""
    return (f"tmpfs writable layer{size}, overlay lowerdir={':'.join(image.layers)}" + (",userxattr" if userxattr else "")
            + f" (image {image.name})")


def pivot(root: str) -> None:
    """Make `root` the root; detach the old one (the pivot_root(".", ".") idiom)."""
    os.chdir(root)
    linux.pivot_root(".", ".")
    linux.umount(".", linux.MNT_DETACH)
    os.chdir("/")

