"""v2 device control: a BPF_PROG_TYPE_CGROUP_DEVICE program attached to the group.

cgroup v2 has no devices.allow file.  Instead the kernel runs a small eBPF
program, attached to the group with bpf(2) BPF_PROG_ATTACH (type
BPF_CGROUP_DEVICE), on every open(2) and mknod(2) of a device node by a
process in the group; it returns 1 to allow and 0 to refuse (EPERM).  Its
input (struct bpf_cgroup_dev_ctx) is three 32-bit words: access_type (device
type in the low 16 bits, BPF_DEVCG_DEV_CHAR/BLOCK; requested access in the
high 16, BPF_DEVCG_ACC_MKNOD/READ/WRITE), major, minor.

`program()` assembles, as runc and crun do, one block per allowed rule that
falls through to the next block on a mismatch, and a final "refuse".  The
policy is security/devices.py.  Man pages: bpf(2); kernel doc:
Documentation/admin-guide/cgroup-v2.rst, "Device controller".
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

from ...security import devices, guards

BPF_PROG_LOAD, BPF_PROG_ATTACH, BPF_PROG_DETACH, BPF_PROG_GET_FD_BY_ID, BPF_PROG_QUERY = 5, 8, 9, 13, 16
BPF_F_ALLOW_MULTI = 2
BPF_PROG_TYPE_CGROUP_DEVICE, BPF_CGROUP_DEVICE = 15, 6
DEV_TYPE = {"b": 1, "c": 2}  # BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR
ACCESS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE
_SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}

# eBPF opcodes (include/uapi/linux/bpf.h): class | op | source.
LDX_W = 0x61  # dst = *(u32 *)(src + off)
AND_K, RSH_K, MOV_K, MOV_X = 0x57, 0x77, 0xB7, 0xBF  # 64-bit ALU with an immediate or a register
JNE_K, JNE_X, EXIT = 0x55, 0x5D, 0x95


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _rule_block(rule: devices.Rule) -> list[bytes]:
    """Allow (r0 = 1, exit) if the request matches `rule`; otherwise jump past the block.

    Registers, set by the prologue: r2 type, r3 access, r4 major, r5 minor.
    """
    checks: list[tuple[list[bytes], tuple[int, int, int, int]]] = []  # (set-up, the "no" jump)
    if rule.kind != "a":
        checks.append(([], (JNE_K, 2, 0, DEV_TYPE[rule.kind])))
    wanted = sum(ACCESS[c] for c in rule.access)
    if wanted != 0b111:  # every requested bit must be in the rule's: (r3 & wanted) != r3 means no
        checks.append(([_insn(MOV_X, 1, 3), _insn(AND_K, 1, imm=wanted)], (JNE_X, 1, 3, 0)))
    if rule.major != devices.WILDCARD:
        checks.append(([], (JNE_K, 4, 0, rule.major)))
    if rule.minor != devices.WILDCARD:
        checks.append(([], (JNE_K, 5, 0, rule.minor)))
    size = sum(len(setup) + 1 for setup, _ in checks) + 2  # + "r0 = 1; exit"
    block: list[bytes] = []
    for setup, (code, dst, src, imm) in checks:
        block += setup
        block.append(_insn(code, dst, src, off=size - len(block) - 1, imm=imm))  # to the next block
    return block + [_insn(MOV_K, 0, imm=1), _insn(EXIT)]


def program(rules: tuple[devices.Rule, ...] = devices.ALLOWED) -> bytes:
    prologue = [
        _insn(LDX_W, 2, 1, 0), _insn(AND_K, 2, imm=0xFFFF),  # r2 = type
        _insn(LDX_W, 3, 1, 0), _insn(RSH_K, 3, imm=16),  # r3 = access
        _insn(LDX_W, 4, 1, 4), _insn(LDX_W, 5, 1, 8),  # r4 = major, r5 = minor
    ]
    body = [insn for rule in rules for insn in _rule_block(rule)]
    return b"".join(prologue + body + [_insn(MOV_K, 0, imm=0), _insn(EXIT)])


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _bpf(cmd: int, attr: bytes, what: str) -> int:
    nr = _SYS_BPF.get(platform.machine())
    if nr is None:
        raise OSError(errno.ENOSYS, f"bpf: unsupported architecture {platform.machine()}")
    buffer = ctypes.create_string_buffer(attr, len(attr))
    result = _libc.syscall(nr, cmd, buffer, len(attr))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _load(code: bytes) -> int:
    license_ = ctypes.create_string_buffer(b"MIT")
    insns = ctypes.create_string_buffer(code, len(code))
    attr = struct.pack("<IIQQIIQII16sII", BPF_PROG_TYPE_CGROUP_DEVICE, len(code) // 8, ctypes.addressof(insns),
                       ctypes.addressof(license_), 0, 0, 0, 0, 0, b"clab_devices", 0, BPF_CGROUP_DEVICE)
    return _bpf(BPF_PROG_LOAD, attr, "bpf(BPF_PROG_LOAD) of the device filter")


def attach(group_dir: str) -> None:
    """Limit the group to Docker's device allowlist.  Attached with BPF_F_ALLOW_MULTI, as
    runc does: a group below (a nested lab) may add a program of its own, and the kernel
    allows a device only if every program on the way up allows it."""
    if guards.disabled("devices-cgroup"):
        return
    prog = _load(program())
    try:
        group = os.open(group_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _bpf(BPF_PROG_ATTACH, struct.pack("<IIIII", group, prog, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI, 0),
                 f"bpf(BPF_PROG_ATTACH) of the device filter to {group_dir}")
        finally:
            os.close(group)
    finally:
        os.close(prog)  # the attachment holds the program


def _attached(group: int) -> list[int]:
    """IDs of the device programs attached to this very group (bpf(2) BPF_PROG_QUERY)."""
    ids = (ctypes.c_uint32 * 64)()
    attr = struct.pack("<IIIIQI4x", group, BPF_CGROUP_DEVICE, 0, 0, ctypes.addressof(ids), 64)
    buffer = ctypes.create_string_buffer(attr, len(attr))
    nr = _SYS_BPF[platform.machine()]
    if _libc.syscall(nr, BPF_PROG_QUERY, buffer, len(attr)) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf(BPF_PROG_QUERY): {os.strerror(err)}")
    count = struct.unpack_from("<I", buffer.raw, 24)[0]
    return list(ids[:count])


def limit(group_dir: str) -> None:
    """attach(), except where we are not root: a rootless container's user namespace
    cannot make or open a host device anyway (mknod needs CAP_MKNOD in the initial one),
    and loading BPF needs privileges it does not have."""
    try:
        attach(group_dir)
    except OSError as e:
        if e.errno != errno.EPERM or os.geteuid() == 0:
            raise


def detach(group_dir: str) -> None:
    """--privileged: every device (the group's programs go; the lab's own group has none)."""
    group = os.open(group_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for prog_id in _attached(group):
            prog = _bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("<III", prog_id, 0, 0), "bpf(BPF_PROG_GET_FD_BY_ID)")
            try:
                _bpf(BPF_PROG_DETACH, struct.pack("<IIIII", group, prog, BPF_CGROUP_DEVICE, 0, 0),
                     f"bpf(BPF_PROG_DETACH) of the device filter from {group_dir}")
            finally:
                os.close(prog)
    finally:
        os.close(group)
