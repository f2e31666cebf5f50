"""The seccomp deny-list applied to every process that runs untrusted code.

The filter is compiled once on the host with libseccomp (PyPI ``pyseccomp``) into a classic-BPF
*template*. Rules that must name the calling process ("``kill`` only yourself") compare against
:data:`PID_PLACEHOLDER`; the worker patches that constant with the child's pid right after
``fork()`` and loads the program with one ``prctl`` call, which costs microseconds instead of a
libseccomp compile per call, and keeps libseccomp out of the sandbox.

Default action ALLOW; the listed calls fail with EPERM (``clone3`` with ENOSYS, so glibc falls
back to ``clone``, whose namespace flags are then checked). Architecture mismatches (i386
``int 0x80``, x32) kill the process: libseccomp emits that check at the top of the program.

A deny-list is only as good as its list, so the list is organised by *class of effect*, each
closed as a whole rather than trick by trick:

* signals reach only the caller: every signal-sending call is self-only or denied, and so is
  every way to make the kernel send one later on the caller's behalf (``fcntl`` owner, lease
  and dnotify requests, the socket and tty owner requests of ``ioctl``);
* no kernel object outlives the call or escapes ``RLIMIT_AS``: System V shared memory,
  message queues and semaphores, POSIX message queues and ``memfd`` are denied;
* no file metadata changes: mode, owner, times, extended attributes and inode flags of any
  file (Landlock does not cover them, and at the ``process`` level on a non-root host every
  file of the user belongs to the caller);
* syscalls newer than this list (numbers from :data:`FIRST_UNREVIEWED_NR` up) fail with
  ENOSYS, so a kernel upgrade cannot open a route this list has never seen.

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

#: System V and POSIX IPC, and anonymous shared files: their memory is not counted by
#: RLIMIT_AS, and SysV/mqueue objects outlive the process (in the host's IPC namespace at the
#: ``process`` level), so they would carry data or memory from one call to the next.
DENIED_IPC_SYSCALLS = (
    "shmget",
    "shmat",
    "shmdt",
    "shmctl",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "semget",
    "semop",
    "semtimedop",
    "semctl",
    "ipc",  # the multiplexer of architectures without separate calls
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedreceive",
    "mq_notify",
    "mq_getsetattr",
    "memfd_create",
    "memfd_secret",
)

#: File metadata: mode, owner, times and extended attributes. Landlock governs none of these,
#: so at the ``process`` level on a non-root host they would reach every file of the user;
#: at every level they would let a call leave marks on the work root or /dev/shm that the
#: wipe does not see. Code that needs a copy uses ``shutil.copyfile`` (``shutil.copy`` also
#: copies the mode bits, and fails).
DENIED_METADATA_SYSCALLS = (
    "chmod",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "fchown",
    "lchown",
    "fchownat",
    "utime",
    "utimes",
    "futimesat",
    "utimensat",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "setxattrat",
    "removexattrat",
    "file_setattr",
)

#: Numbers of calls newer than some libseccomp releases know, on every architecture that
#: shares the unified table (all but alpha, since Linux 5.1), for the names above.
_UNIFIED_NR = {"setxattrat": 463, "removexattrat": 466, "file_setattr": 469}

#: Calls from this number up (Linux 6.18 ends at 469) fail with ENOSYS until reviewed here.
FIRST_UNREVIEWED_NR = 470

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
#: ``fcntl`` commands that make the kernel signal a process later: the SIGIO/SIGURG owner of
#: an open file (any pid or group), its signal, and leases and dnotify (which also set it).
_FCNTL_SIGNAL_OWNER = (
    8,  # F_SETOWN
    10,  # F_SETSIG
    15,  # F_SETOWN_EX
    1024,  # F_SETLEASE
    1026,  # F_NOTIFY
)
#: ``ioctl`` requests refused on every file: terminal input injection and job control, the
#: socket/file owner requests (the ``ioctl`` route to F_SETOWN), O_ASYNC, and inode flags.
_IOCTL_DENIED = (
    0x5412,  # TIOCSTI: push bytes into a terminal's input (CVE-2017-5226)
    0x541C,  # TIOCLINUX
    0x5410,  # TIOCSPGRP: choose which group a terminal signals
    0x540E,  # TIOCSCTTY
    0x8901,  # FIOSETOWN
    0x8902,  # SIOCSPGRP
    0x5452,  # FIOASYNC
    0x40086602,  # FS_IOC_SETFLAGS (chattr)
    0x401C5820,  # FS_IOC_FSSETXATTR
)

_INSN = struct.Struct("=HBBI")  # struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}
_SECCOMP_RET_ERRNO = 0x00050000
#: AUDIT_ARCH values of x86_64, aarch64, riscv64, ppc64le, s390x and loongarch64.
_UNIFIED_ARCHES = {0xC000003E, 0xC00000B7, 0xC00000F3, 0xC0000015, 0x80000016, 0xC0000102}


def build_template() -> bytes:
    """Compile the deny-list into a BPF program for this machine's architecture.

    Raises ImportError when pyseccomp (or the OS ``libseccomp.so.2``) is missing, and
    RuntimeError if the program does not carry the pid placeholder where expected.
    """
    import pyseccomp as sc

    eperm = sc.ERRNO(errno.EPERM)
    arch = sc.system_arch()
    f = sc.SyscallFilter(defaction=sc.ALLOW)
    try:  # a binary search over syscall numbers instead of a linear chain (libseccomp >= 2.5)
        f.set_attr(sc.Attr.CTL_OPTIMIZE, 2)
    except (OSError, ValueError, RuntimeError):
        pass

    def nr(name: str) -> int | None:
        n = sc.resolve_syscall(arch, name)
        return n if n >= 0 else _UNIFIED_NR.get(name) if arch in _UNIFIED_ARCHES else None

    for name in DENIED_SYSCALLS + DENIED_IPC_SYSCALLS + DENIED_METADATA_SYSCALLS:
        if nr(name) is not None:
            f.add_rule(eperm, nr(name))
    if nr("clone3") is not None:
        f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for flag in _CLONE_NS_FLAGS:
        f.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    # Both compare the low 32 bits only: the kernel reads these arguments as 32-bit ints.
    for req in _IOCTL_DENIED:
        f.add_rule(eperm, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, req))
    for cmd in _FCNTL_SIGNAL_OWNER:
        f.add_rule(eperm, "fcntl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, cmd))
    for name in SELF_ONLY_SIGNAL_SYSCALLS:
        f.add_rule(eperm, name, sc.Arg(0, sc.NE, PID_PLACEHOLDER))
    for name in SELF_ONLY_ZERO_ARG0:
        if nr(name) is not None:
            f.add_rule(eperm, name, sc.Arg(0, sc.NE, 0))
    f.add_rule(eperm, "setpriority", sc.Arg(1, sc.NE, 0))

    with tempfile.TemporaryFile() as tmp:
        f.export_bpf(tmp)
        tmp.seek(0)
        prog = _deny_unreviewed() + tmp.read()
    # libseccomp shares identical argument checks between syscalls, so one hit is enough.
    if len(prog) % _INSN.size or not placeholder_offsets(prog):
        raise RuntimeError("seccomp program does not compare against the pid placeholder")
    return prog


def _deny_unreviewed() -> bytes:
    """BPF prefix: ``nr >= FIRST_UNREVIEWED_NR`` returns ENOSYS, all else falls through.

    Placed before libseccomp's program (cBPF jumps are relative, so it needs no rewriting).
    It runs before the architecture check, which is harmless: it only ever refuses.
    """
    ld_nr = 0x20  # BPF_LD | BPF_W | BPF_ABS, offset 0 = seccomp_data.nr
    jge = 0x35  # BPF_JMP | BPF_JGE | BPF_K
    ret = 0x06  # BPF_RET | BPF_K
    return b"".join(
        (
            _INSN.pack(ld_nr, 0, 0, 0),
            _INSN.pack(jge, 0, 1, FIRST_UNREVIEWED_NR),
            _INSN.pack(ret, 0, 0, _SECCOMP_RET_ERRNO | errno.ENOSYS),
        )
    )


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
