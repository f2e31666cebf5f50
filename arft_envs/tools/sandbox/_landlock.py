"""Landlock (Linux >= 5.13): confine a process's writes to its work dir, without privileges.

Used by the ``process`` level, which has no mount namespace. A Landlock domain also stops the
process from ptrace-style access to processes outside it, so code running as the host's own
uid cannot open ``/proc/<host>/mem`` or ``/proc/<host>/environ``.

Imported on the host and, inside a worker, as the top-level ``_landlock``; standard library
only.
"""

from __future__ import annotations

import ctypes
import os

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # same on all arches
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

_WRITE_FILE = 1 << 1
_WRITE_ACCESS_V1 = _WRITE_FILE | sum(1 << b for b in range(4, 13))  # remove_*, make_*
_REFER = 1 << 13  # ABI 2
_TRUNCATE = 1 << 14  # ABI 3


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def abi_version() -> int:
    """The Landlock ABI version this kernel offers; 0 when Landlock is unavailable."""
    v = _libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    return max(int(v), 0)


def restrict_writes(writable_dirs: list[str], writable_files: list[str], abi: int) -> None:
    """Allow file-system modifications only beneath ``writable_dirs`` and to
    ``writable_files`` (e.g. /dev/null), for this process and its future children.

    Reads are not restricted. Raises OSError when the kernel refuses.
    """
    handled = _WRITE_ACCESS_V1 | (_REFER if abi >= 2 else 0) | (_TRUNCATE if abi >= 3 else 0)
    attr = _RulesetAttr(handled)
    rs = _libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(8), 0)
    if rs < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        for path, access in [(d, handled) for d in writable_dirs] + [
            (f, _WRITE_FILE | (_TRUNCATE if abi >= 3 else 0)) for f in writable_files
        ]:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneathAttr(access, fd)
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
