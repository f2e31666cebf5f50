"""Landlock (Linux >= 5.13): confine a call's process without privileges, at every level.

What one :func:`confine` gives the process and its future children, by kernel ABI:

* writes (create, remove, rename, link, write, truncate) only beneath the writable dirs and
  to the writable files (ABI 1; REFER 2; TRUNCATE 3). At the ``bwrap`` level the mounts
  already make everything else read-only; at the ``process`` level this is the only bound;
* optionally, reads (and device ``ioctl``, ABI 5) only beneath a list of roots: the
  ``process`` level passes :func:`readable_roots`, everything except procfs and ``/dev``, so
  code cannot read the host's command lines, status or mount table, nor the user's terminal;
* no TCP bind or connect (ABI 4), on top of seccomp's ban on ``socket()``;
* signals only to processes of the same domain, i.e. of the same call, whatever route the
  kernel takes (``kill`` or a file owner's SIGIO), and no abstract-socket connections out
  of the domain (ABI 6 scopes);
* at any ABI, no ptrace-style access to processes outside the domain: code that runs as the
  same uid as the host (``process`` level) or as bwrap's pid 1 (``bwrap``) cannot open their
  ``/proc/<pid>/mem`` or ``/proc/<pid>/environ``.

Imported on the host and, inside a worker, as the top-level ``_landlock``; standard library
only.
"""

from __future__ import annotations

import ctypes
import os
import stat

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # same on all arches
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

_READ_FILE = 1 << 2
_READ_DIR = 1 << 3
_WRITE_FILE = 1 << 1
_WRITE_ACCESS_V1 = _WRITE_FILE | sum(1 << b for b in range(4, 13))  # remove_*, make_*
_REFER = 1 << 13  # ABI 2
_TRUNCATE = 1 << 14  # ABI 3
_IOCTL_DEV = 1 << 15  # ABI 5
_FILE_RIGHTS = 1 | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV  # 1 = EXECUTE
_NET_TCP = (1 << 0) | (1 << 1)  # ABI 4: bind, connect
_SCOPES = (1 << 0) | (1 << 1)  # ABI 6: abstract unix sockets, signals

#: Files of procfs and /dev that stay readable when reads are confined: the caller's own
#: /proc entry (``/proc/self`` resolves to it when :func:`confine` runs), machine facts that
#: name no process, and the harmless character devices.
PROCESS_INFO_KEPT = (
    "/proc/self",
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def abi_version() -> int:
    """The Landlock ABI version this kernel offers; 0 when Landlock is unavailable."""
    v = _libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    return max(int(v), 0)


def readable_roots() -> list[str]:
    """Paths that together cover the whole file tree except procfs mounts and ``/dev``, plus
    :data:`PROCESS_INFO_KEPT`: the read allow-list of the ``process`` level.

    Landlock rules only allow, so "all but /proc" is spelled as every sibling on the way to
    each hidden mount. Symlinks get no rule of their own: Landlock checks the path a link
    resolves to, so a link into a hidden tree stays hidden. Computed once by the server.
    """
    hidden = {"/dev"}
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "proc":
                    hidden.add(_unescape(left.split(" ")[4]))
    except OSError:
        hidden.add("/proc")
    out: list[str] = []
    stack = ["/"]
    while stack:
        d = stack.pop()
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for name in names:
            p = os.path.join(d, name)
            if p in hidden or os.path.islink(p):
                continue
            if any(h.startswith(p + "/") for h in hidden):
                if os.path.isdir(p):
                    stack.append(p)
            else:
                out.append(p)
    return out + list(PROCESS_INFO_KEPT)


def _unescape(field: str) -> str:
    """A mountinfo path field with its octal escapes (``\\040`` for a space) decoded."""
    return field.encode().decode("unicode_escape") if "\\" in field else field


def confine(
    writable_dirs: list[str],
    writable_files: list[str],
    abi: int,
    readable: list[str] | None = None,
) -> None:
    """Enter a new Landlock domain (see the module docstring) for this process and its future
    children. ``readable=None`` leaves reads unrestricted; otherwise reads are allowed only
    beneath those paths (plus the writable ones); read roots that cannot be opened are skipped.

    Raises OSError when the kernel refuses; the caller must then not run the code.
    """
    fs = _WRITE_ACCESS_V1 | (_REFER if abi >= 2 else 0) | (_TRUNCATE if abi >= 3 else 0)
    read = 0
    if readable is not None:
        read = _READ_FILE | _READ_DIR
        fs |= read | (_IOCTL_DEV if abi >= 5 else 0)
    attr = _RulesetAttr(fs, _NET_TCP if abi >= 4 else 0, _SCOPES if abi >= 6 else 0)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    rs = _libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    if rs < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        rules = [(p, fs, True) for p in writable_dirs + writable_files]
        rules += [(p, read, False) for p in readable or ()]
        for path, access, required in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                if not required:
                    continue  # a read root that is gone or unreachable: nothing to allow
                raise
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    access &= _FILE_RIGHTS  # the kernel refuses directory rights on a file
                rule = _PathBeneathAttr(access & fs, fd)
                if _libc.syscall(_SYS_ADD_RULE, rs, _RULE_PATH_BENEATH, ctypes.byref(rule), 0):
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule({path}) failed")
            finally:
                os.close(fd)
        if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if _libc.syscall(_SYS_RESTRICT_SELF, rs, 0):
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(rs)


def restrict_writes(writable_dirs: list[str], writable_files: list[str], abi: int) -> None:
    """:func:`confine` with reads unrestricted (the ``bwrap`` level's mounts bound them)."""
    confine(writable_dirs, writable_files, abi)
