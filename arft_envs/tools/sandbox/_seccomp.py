"""The seccomp deny-list applied to every process that runs untrusted code.

The filter is compiled once on the host with libseccomp (PyPI ``pyseccomp``) into a classic-BPF
*template*. Rules that must name the calling process ("``kill`` only yourself") compare against
:data:`PID_PLACEHOLDER`; the worker patches that constant with the child's pid right after
``fork()`` and loads the program with one ``prctl`` call, which costs microseconds instead of a
libseccomp compile per call, and keeps libseccomp out of the sandbox.

Default action ALLOW; the listed calls fail with EPERM (``clone3`` with ENOSYS, so glibc falls
back to ``clone``, whose namespace flags are then checked). Architecture mismatches (i386
``int 0x80``, x32) kill the process: libseccomp emits that check at the top of the program.

Imported on the host as ``arft_envs.tools.sandbox._seccomp`` and inside the sandbox as the
top-level ``_seccomp`` (only :func:`install` is used there), so it imports pyseccomp lazily.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import tempfile

#: A 32-bit constant that stands for "the calling process's pid" in the template.
PID_PLACEHOLDER = 0x5EC0_0D1D

#: Calls denied outright (EPERM): networking, debugging other processes, mounts and namespaces,
#: kernel keyrings/modules/BPF/perf, io_uring (a common seccomp bypass), leaving the process
#: group or session (so one ``killpg`` reaches every descendant), and clock/host settings.
DENIED_SYSCALLS = (
    "socket",
    "socketpair",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "process_madvise",
    "kcmp",
    "pidfd_open",
    "pidfd_getfd",
    "pidfd_send_signal",
    "tkill",
    "setsid",
    "setpgid",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "open_by_handle_at",
    "name_to_handle_at",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "keyctl",
    "add_key",
    "request_key",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "swapon",
    "swapoff",
    "reboot",
    "acct",
    "quotactl",
    "syslog",
    "vhangup",
    "personality",
    "move_pages",
    "migrate_pages",
    "ioprio_set",
    "fanotify_init",
    "iopl",
    "ioperm",
    "sethostname",
    "setdomainname",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
)

#: Signal-sending calls, allowed only when their first argument is the caller's own pid.
SELF_ONLY_SIGNAL_SYSCALLS = ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")

#: Calls allowed only on the caller itself (first argument 0): changing another process's
#: limits, scheduling or priority would let code slow down or starve the fork-server.
SELF_ONLY_ZERO_ARG0 = (
    "prlimit64",
    "setpriority",
    "sched_setaffinity",
    "sched_setscheduler",
    "sched_setparam",
    "sched_setattr",
)

_CLONE_NS_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)
_TIOCSTI = 0x5412  # push bytes into a terminal's input (CVE-2017-5226)
_TIOCLINUX = 0x541C

_INSN = struct.Struct("=HBBI")  # struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}


def build_template() -> bytes:
    """Compile the deny-list into a BPF program for this machine's architecture.

    Raises ImportError when pyseccomp (or the OS ``libseccomp.so.2``) is missing, and
    RuntimeError if the program does not carry the pid placeholder where expected.
    """
    import pyseccomp as sc

    eperm = sc.ERRNO(errno.EPERM)
    arch = sc.system_arch()
    f = sc.SyscallFilter(defaction=sc.ALLOW)

    def known(name: str) -> bool:
        return sc.resolve_syscall(arch, name) >= 0

    for name in DENIED_SYSCALLS:
        if known(name):
            f.add_rule(eperm, name)
    if known("clone3"):
        f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for flag in _CLONE_NS_FLAGS:
        f.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    for req in (_TIOCSTI, _TIOCLINUX):
        f.add_rule(eperm, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, req))
    for name in SELF_ONLY_SIGNAL_SYSCALLS:
        f.add_rule(eperm, name, sc.Arg(0, sc.NE, PID_PLACEHOLDER))
    for name in SELF_ONLY_ZERO_ARG0:
        if known(name):
            f.add_rule(eperm, name, sc.Arg(0, sc.NE, 0))
    f.add_rule(eperm, "setpriority", sc.Arg(1, sc.NE, 0))

    with tempfile.TemporaryFile() as tmp:
        f.export_bpf(tmp)
        tmp.seek(0)
        prog = tmp.read()
    # libseccomp shares identical argument checks between syscalls, so one hit is enough.
    if len(prog) % _INSN.size or not placeholder_offsets(prog):
        raise RuntimeError("seccomp program does not compare against the pid placeholder")
    return prog


def placeholder_offsets(prog: bytes) -> list[int]:
    """Byte offsets of the ``k`` fields equal to :data:`PID_PLACEHOLDER` in a BPF program."""
    return [
        off + 4
        for off in range(0, len(prog), _INSN.size)
        if _INSN.unpack_from(prog, off)[3] == PID_PLACEHOLDER
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_libc = None


def load_libc() -> None:
    """Resolve ``prctl`` now, so that :func:`install` does no dynamic loading after fork."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
        _libc.prctl.restype = ctypes.c_int


def install(prog: bytes, offsets: list[int], pid: int | None = None) -> None:
    """Load the template into the calling thread, with the placeholder set to ``pid``.

    Also sets ``PR_SET_NO_NEW_PRIVS`` (required for an unprivileged filter; it also makes
    setuid binaries useless). Must be called from a single-threaded process (after fork).
    """
    load_libc()
    pid = os.getpid() if pid is None else pid
    buf = bytearray(prog)
    for off in offsets:
        struct.pack_into("=I", buf, off, pid)
    arr = (ctypes.c_ubyte * len(buf)).from_buffer(buf)
    fprog = _SockFprog(len(buf) // _INSN.size, ctypes.addressof(arr))
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if _libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")
