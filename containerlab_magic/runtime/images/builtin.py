"""Recipes for the built-in images.

`host`: the host's own programs, read-only.  The rootfs is a skeleton (empty
mount points, the host's top-level symlinks such as /bin -> usr/bin, and a
minimal /etc); /usr and friends are bind-mounted read-only from the host at
container start.  /etc keeps what programs need to run (ld.so.cache for the
dynamic linker, alternatives symlinks) and none of the host's secrets.

`busybox`: a tiny, visibly different userland: the static busybox binary of
Debian's busybox-static package and one symlink per applet.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from ..errors import HostUnsupported

RECIPE_VERSION = "1"
SKELETON_DIRS = ("proc", "dev", "sys", "tmp", "etc", "root", "home", "run", "var/tmp", "mnt", "opt", "srv")
HOST_TOP = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
HOST_ETC_COPY = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "nsswitch.conf",
                 "os-release", "localtime", "bash.bashrc", "profile", "shells", "debian_version", "mime.types")

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
GROUP = "root:x:0:\ndaemon:x:1:\ntty:x:5:\nnogroup:x:65534:\n"


def _skeleton(rootfs: str) -> None:
    os.makedirs(rootfs, mode=0o755)
    for d in SKELETON_DIRS:
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    os.chmod(os.path.join(rootfs, "tmp"), 0o1777)
    os.chmod(os.path.join(rootfs, "var/tmp"), 0o1777)
    os.chmod(os.path.join(rootfs, "root"), 0o700)
    etc = os.path.join(rootfs, "etc")
    for fname, text in (("passwd", PASSWD), ("group", GROUP), ("hosts", "127.0.0.1\tlocalhost\n"),
                        ("hostname", "container\n"), ("resolv.conf", "")):
        with open(os.path.join(etc, fname), "w") as f:
            f.write(text)


class HostImage:
    def fingerprint(self) -> str:
        parts = [RECIPE_VERSION]
        for top in HOST_TOP:
            path = "/" + top
            parts.append(f"{top}={os.readlink(path) if os.path.islink(path) else os.path.isdir(path)}")
        for name in ("alternatives", "ld.so.cache"):
            try:
                parts.append(str(os.stat("/etc/" + name).st_mtime_ns))
            except FileNotFoundError:
                parts.append("-")
        return ";".join(parts)

    def binds(self) -> tuple[str, ...]:
        return tuple("/" + t for t in HOST_TOP if os.path.isdir("/" + t) and not os.path.islink("/" + t))

    def build(self, rootfs: str) -> None:
        _skeleton(rootfs)
        for top in HOST_TOP:
            src, dst = "/" + top, os.path.join(rootfs, top)
            if os.path.islink(src):
                os.symlink(os.readlink(src), dst)
            elif os.path.isdir(src):
                os.mkdir(dst)
        for name in HOST_ETC_COPY:
            src, dst = "/etc/" + name, os.path.join(rootfs, "etc", name)
            if os.path.islink(src) or os.path.isfile(src):
                shutil.copy2(src, dst, follow_symlinks=False)
            elif os.path.isdir(src):
                shutil.copytree(src, dst, symlinks=True)


class BusyboxImage:
    SEARCH = ("/bin/busybox", "/usr/bin/busybox")

    def _binary(self) -> str:
        for path in self.SEARCH:
            if os.path.isfile(path):
                return path
        raise HostUnsupported(
            "the busybox image needs a static busybox binary: install it with "
            "`apt-get install busybox-static` (Debian/Ubuntu)"
        )

    def fingerprint(self) -> str:
        st = os.stat(self._binary())
        return f"{RECIPE_VERSION};{st.st_size};{st.st_mtime_ns}"

    def binds(self) -> tuple[str, ...]:
        return ()

    def build(self, rootfs: str) -> None:
        binary = self._binary()
        _skeleton(rootfs)
        for d in ("bin", "sbin", "usr/bin", "usr/sbin"):
            os.makedirs(os.path.join(rootfs, d), exist_ok=True)
        shutil.copy2(binary, os.path.join(rootfs, "bin/busybox"))
        applets = subprocess.run([binary, "--list-full"], capture_output=True, text=True, check=True).stdout
        for applet in applets.split():
            dst = os.path.join(rootfs, applet)
            if applet != "bin/busybox" and not os.path.lexists(dst):
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                os.symlink("/bin/busybox", dst)
