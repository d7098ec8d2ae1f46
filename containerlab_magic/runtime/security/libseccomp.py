"""A thin ctypes binding of libseccomp2's C API: build a filter, export its BPF.

seccomp(2) filters are classic BPF programs run on every system call; writing
them by hand is error-prone (architectures, syscall numbers, 64-bit argument
compares), so libseccomp (seccomp_init(3), seccomp_rule_add(3),
seccomp_export_bpf(3)) writes them.  We only *build* with libseccomp, in the
shim, once per distinct profile; a container's PID 1 then loads the exported
bytes with one prctl(2), which costs microseconds instead of the milliseconds a
compile takes.

Why a binding of our own: Debian's python3-seccomp serves only /usr/bin/python3,
and the ctypes `pyseccomp` on PyPI has had no release since 2021; the dozen
calls we need fit here.  Debian package: libseccomp2.
"""

from __future__ import annotations

import ctypes
import os

ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_TRAP = 0x00030000
ACT_ERRNO = 0x00050000
ACT_TRACE = 0x7FF00000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000

CMP_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
           "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}

_ATTR_ACT_BADARCH = 2
_ATTR_CTL_OPTIMIZE = 8  # 2: a binary tree of syscall numbers, not a linear list
_NR_SCMP_ERROR = -1


class ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp: compare argument `arg` with `op` (MASKED_EQ: (arg & a) == b)."""

    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


_lib = None


def lib() -> ctypes.CDLL:
    """libseccomp, loaded on first use; OSError(ENOENT) naming the package when absent."""
    global _lib
    if _lib is None:
        import ctypes.util  # (here: finding the library costs ~10 ms, only a filter needs it)

        name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
        try:
            handle = ctypes.CDLL(name, use_errno=True)
        except OSError:
            raise OSError(2, "libseccomp is not installed: install the libseccomp2 package") from None
        handle.seccomp_init.restype = ctypes.c_void_p
        handle.seccomp_init.argtypes = (ctypes.c_uint32,)
        handle.seccomp_release.argtypes = (ctypes.c_void_p,)
        handle.seccomp_arch_add.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
        handle.seccomp_arch_native.restype = ctypes.c_uint32
        handle.seccomp_arch_resolve_name.restype = ctypes.c_uint32
        handle.seccomp_arch_resolve_name.argtypes = (ctypes.c_char_p,)
        handle.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
        handle.seccomp_rule_add_array.argtypes = (ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                                  ctypes.POINTER(ArgCmp))
        handle.seccomp_attr_set.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32)
        handle.seccomp_export_bpf.argtypes = (ctypes.c_void_p, ctypes.c_int)
        _lib = handle
    return _lib


def _check(result: int, what: str) -> None:
    if result < 0:  # libseccomp returns -errno
        raise OSError(-result, f"{what}: {os.strerror(-result)}")


def arch_token(name: str) -> int:
    """'x86_64' -> libseccomp's architecture token; 0 when libseccomp does not know it."""
    return lib().seccomp_arch_resolve_name(name.encode())


class Filter:
    """One filter under construction (scmp_filter_ctx); `export()` returns its BPF bytes."""

    def __init__(self, default_action: int, bad_arch_action: int):
        self.ctx = lib().seccomp_init(default_action)
        if not self.ctx:
            raise OSError(22, "seccomp_init failed: bad default action")
        _check(lib().seccomp_attr_set(self.ctx, _ATTR_ACT_BADARCH, bad_arch_action), "seccomp_attr_set")
        lib().seccomp_attr_set(self.ctx, _ATTR_CTL_OPTIMIZE, 2)  # libseccomp >= 2.5; older ones ignore it

    def add_arch(self, token: int) -> None:
        result = lib().seccomp_arch_add(self.ctx, token)
        if result != -17:  # EEXIST: the native one is there from the start
            _check(result, "seccomp_arch_add")

    @staticmethod
    def syscall_number(name: str) -> int | None:
        """The native number of `name` (negative: a pseudo-number for a syscall only other
        architectures have, which libseccomp maps for each); None if libseccomp does not know it."""
        number = lib().seccomp_syscall_resolve_name(name.encode())
        return None if number == _NR_SCMP_ERROR else number

    def add_rule(self, action: int, syscall: int, args: list[tuple[int, int, int, int]]) -> None:
        """args: (index, op, datum_a, datum_b) that must all hold."""
        array = (ArgCmp * max(1, len(args)))(*[ArgCmp(*a) for a in args])
        _check(lib().seccomp_rule_add_array(self.ctx, action, syscall, len(args), array), "seccomp_rule_add")

    def export(self) -> bytes:
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            _check(lib().seccomp_export_bpf(self.ctx, fd), "seccomp_export_bpf")
            size = os.lseek(fd, 0, os.SEEK_END)
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)

    def release(self) -> None:
        if self.ctx:
            lib().seccomp_release(self.ctx)
            self.ctx = None
