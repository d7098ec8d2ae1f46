"""A real, tiny virtual machine beside a container, measured (the course's lesson 06).

The VM is Debian's own kernel (/boot/vmlinuz-*) booted by qemu with an
initramfs built here: busybox (static) as /init, which mounts /proc, prints a
marker, the kernel's release and its memory, and powers off.  KVM is used when
/dev/kvm works (a short probe boots with it first); otherwise qemu emulates the
CPU in software (TCG), as it does in CI, and says so.  Measured from outside
like the container beside it: time to the first line the guest prints, time to
the end, and the most memory the qemu process held (its peak RSS, from wait4).

    from containerlab_magic.course_vm import boot_vm, boot_container
    vm, box = boot_vm(), boot_container(engine)
"""

from __future__ import annotations

import html
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

MARKER = "CLAB-VM-UP"
INIT = f"""#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo {MARKER}
echo "kernel $(/bin/busybox uname -r)"
echo "memory $(/bin/busybox grep MemTotal /proc/meminfo)"
/bin/busybox poweroff -f
"""
BUSYBOX = "/bin/busybox"  # Debian's busybox-static: runs as /init with nothing else in the image


@dataclass
class Boot:
    what: str  # "virtual machine (...)" or "container"
    first_output_s: float
    total_s: float
    peak_memory: int  # bytes
    kernel: str
    lines: list[str] = field(default_factory=list)


def _cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """An uncompressed initramfs (cpio "newc", which the kernel unpacks itself): (path, mode, data)."""
    out = bytearray()

    def pad(n: int) -> None:
        out.extend(b"\0" * (-n % 4))

    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], 1):
        raw = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0]
        header = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
        out.extend(header + raw)
        pad(len(header) + len(raw))
        out.extend(data)
        pad(len(data))
    return bytes(out)


def build_initramfs(folder: str) -> str:
    with open(BUSYBOX, "rb") as f:
        busybox = f.read()
    entries = [("bin", 0o40755, b""), ("proc", 0o40755, b""), ("bin/busybox", 0o100755, busybox),
               ("init", 0o100755, INIT.encode())]
    path = os.path.join(folder, "init.cpio")
    with open(path, "wb") as f:
        f.write(_cpio_newc(entries))
    return path


def kernel_image() -> str:
    found = sorted((p for p in os.listdir("/boot") if p.startswith("vmlinuz-")), key=_version)
    if not found:
        raise FileNotFoundError("no kernel in /boot: install Debian's linux-image-amd64 (make setup does)")
    return os.path.join("/boot", found[-1])


def _version(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in name.replace("-", ".").split(".")]


_kvm: list[str] = []  # the probe's answer, once per kernel process: "KVM" or why not


def _qemu(kernel: str, initrd: str, memory_mib: int, kvm: bool) -> list[str]:
    accel = ["-enable-kvm", "-cpu", "host"] if kvm else ["-accel", "tcg"]
    return ["qemu-system-x86_64", *accel, "-m", str(memory_mib), "-kernel", kernel, "-initrd", initrd,
            "-append", "console=ttyS0 quiet panic=-1", "-nographic", "-no-reboot", "-nodefaults",
            "-serial", "stdio"]


def _run(argv: list[str], deadline: float) -> tuple[float | None, float, int, list[str]]:
    """(seconds to the marker or None, seconds to the end, peak RSS bytes, the guest's lines)."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    first, buffer = None, b""
    try:
        while True:
            left = deadline - (time.monotonic() - started)
            if left <= 0:
                proc.kill()
                break
            if not select.select([proc.stdout], [], [], left)[0]:
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buffer += chunk
            if first is None and MARKER.encode() in buffer:
                first = time.monotonic() - started
    finally:
        _, _, usage = os.wait4(proc.pid, 0)
        proc.returncode = 0
        proc.stdout.close()
    total = time.monotonic() - started
    text = buffer.decode(errors="replace").replace("\r", "")
    return first, total, usage.ru_maxrss * 1024, [line.strip() for line in text.splitlines() if line.strip()]


def boot_vm(memory_mib: int = 256, deadline: float = 120.0) -> Boot:
    if shutil.which("qemu-system-x86_64") is None:
        raise FileNotFoundError("qemu is missing: install Debian's qemu-system-x86 (make setup does)")
    kernel = kernel_image()
    with tempfile.TemporaryDirectory(prefix="clab-vm-") as folder:
        initrd = build_initramfs(folder)
        if not _kvm:
            if os.access("/dev/kvm", os.R_OK | os.W_OK):
                first, *_ = _run(_qemu(kernel, initrd, memory_mib, kvm=True), 5.0)
                _kvm.append("KVM" if first is not None else "KVM does not boot here (nested virtualisation)")
            else:
                _kvm.append("no usable /dev/kvm")
        kvm = _kvm[0] == "KVM"
        first, total, peak, lines = _run(_qemu(kernel, initrd, memory_mib, kvm), deadline)
    if first is None:
        raise RuntimeError(f"the VM printed nothing of its own within {deadline:g} s: {lines[-3:]}")
    release = next((line.split(None, 1)[1] for line in lines if line.startswith("kernel ")), "?")
    how = "KVM" if kvm else f"TCG software emulation: {_kvm[0]}"
    return Boot(f"virtual machine ({how}, {memory_mib} MiB)", first, total, peak, release,
                [line for line in lines if line.startswith(("kernel ", "memory "))])


def boot_container(engine, image: str = "busybox") -> Boot:
    """The same work in a container: print a line, the kernel's release, memory; end."""
    from .runtime.spec import ContainerSpec

    # The kernel's shim starts once per notebook kernel (about 50 ms, like qemu's binary being
    # loaded once): started before the clock, as it is for every cell after the first.
    engine.run(ContainerSpec(("true",), image=image)).wait(30)
    started = time.monotonic()
    box = engine.run(ContainerSpec(("sh", "-c", f"echo {MARKER}; echo kernel $(uname -r); "
                                                 "echo memory $(grep MemTotal /proc/meminfo)"), image=image))
    first, text = None, b""
    for _stream, data in box.output():
        text += data
        if first is None and MARKER.encode() in text:
            first = time.monotonic() - started
    result = box.wait(30)
    total = time.monotonic() - started
    usage = result.usage or {}
    peak = usage.get("memory_peak_bytes") or usage.get("memory_bytes") or 0  # (the cgroup's own high-water mark)
    lines = [line for line in text.decode().splitlines() if line.startswith(("kernel ", "memory "))]
    release = next((line.split(None, 1)[1] for line in lines if line.startswith("kernel ")), "?")
    return Boot("container (busybox)", first or total, total, int(peak), release, lines)


def table_and_chart(boots: list[Boot]):
    """An HTML table and a bar chart (SVG) of the measurements, side by side."""
    from IPython.display import HTML

    rows = "".join(f"<tr><td>{html.escape(b.what)}</td><td>{b.first_output_s * 1000:.0f} ms</td>"
                   f"<td>{b.total_s * 1000:.0f} ms</td><td>{b.peak_memory / 2**20:.1f} MiB</td>"
                   f"<td>{html.escape(b.kernel)}</td></tr>" for b in boots)
    table = ("<table><tr><th></th><th>first output</th><th>to the end</th><th>peak memory</th>"
             f"<th>kernel</th></tr>{rows}</table>")
    charts = "".join(_bars(title, [(b.what.split(" (")[0], value(b)) for b in boots], unit)
                     for title, value, unit in (("time to first output", lambda b: b.first_output_s * 1000, "ms"),
                                                ("peak memory", lambda b: b.peak_memory / 2**20, "MiB")))
    return HTML(f"{table}<div style='display:flex;gap:2em'>{charts}</div>")


def _bars(title: str, items: list[tuple[str, float]], unit: str) -> str:
    top = max(v for _, v in items) or 1
    width, bar = 360, 22
    svg = [f"<svg width='{width}' height='{len(items) * (bar + 10) + 24}' xmlns='http://www.w3.org/2000/svg'>",
           f"<text x='0' y='14' font-size='13' font-weight='bold'>{html.escape(title)}</text>"]
    for i, (label, value) in enumerate(items):
        y = 24 + i * (bar + 10)
        length = max(2, (width - 170) * value / top)
        svg.append(f"<text x='0' y='{y + 15}' font-size='12'>{html.escape(label)}</text>"
                   f"<rect x='100' y='{y}' width='{length:.0f}' height='{bar}' fill='{'#d62728' if i else '#1f77b4'}'/>"
                   f"<text x='{105 + length:.0f}' y='{y + 15}' font-size='12'>{value:,.1f} {unit}</text>")
    return "".join(svg) + "</svg>"
