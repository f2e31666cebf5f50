"""Operating-system glue for the fork-server, its template and the calls' processes. Trusted.

Worker side only (imported inside the sandbox as a top-level module): libc and ``prctl``,
task counting for ``RLIMIT_NPROC``, process children, fd hygiene, malloc tuning, and the
import-path trick that keeps the interpreter usable after the ``process`` level drops root.
"""

from __future__ import annotations

import ctypes
import os
import sys

import _launcher

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt() parameters

MADV_HUGEPAGE = 14  # back this range with transparent huge pages where possible
MADV_POPULATE_WRITE = 23  # Linux 5.14+: fault pages in, writable, in one call

libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
libc.malloc.argtypes, libc.malloc.restype = [ctypes.c_size_t], ctypes.c_void_p
libc.free.argtypes, libc.free.restype = [ctypes.c_void_p], None
libc.realloc.argtypes, libc.realloc.restype = [ctypes.c_void_p, ctypes.c_size_t], ctypes.c_void_p
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.sbrk.argtypes, libc.sbrk.restype = [ctypes.c_ssize_t], ctypes.c_void_p


def prctl(option: int, arg: int) -> None:
    if libc.prctl(option, arg, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def count_tasks(uid: int, skip: int = 0) -> int:
    """Tasks (processes and threads) whose real uid is ``uid``, as RLIMIT_NPROC counts them,
    leaving out process ``skip``."""
    n = 0
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == skip:
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                n += int(fields["Threads"])
        except (OSError, KeyError, ValueError):
            pass
    return n


def children() -> list[int]:
    """Pids of this process's children (living or zombie)."""
    try:
        tid = os.getpid()
        with open(f"/proc/self/task/{tid}/children") as f:
            return [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        return []


def process_state(pid: int) -> str:
    """The one-letter state of ``pid`` (``R``, ``S``, ``T``, ``Z``…), or ``""`` if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return chr(f.read().rsplit(b")", 1)[1].split()[0][0])
    except (OSError, IndexError):
        return ""


def parent_of(pid: int) -> int:
    """The parent pid of ``pid``, or -1 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def close_all_but(keep: list[int]) -> None:
    lo = 0
    for fd in sorted(keep):
        if fd > lo:
            os.closerange(lo, fd)
        lo = fd + 1
    os.closerange(lo, 1 << 20)


def keep_freed_memory() -> None:
    """Child side: let glibc reuse freed memory instead of giving it back to the kernel.

    Image code allocates and frees buffers of hundreds of KiB over and over. By default
    glibc serves each from a fresh mmap (or trims the heap on free), so every buffer costs a
    page fault per 4 KiB again. These fixed thresholds (glibc's own dynamic maximum for
    mmap) keep a short-lived call's heap pages for reuse; RLIMIT_AS bounds it exactly as
    before.
    """
    libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
    libc.mallopt(M_TRIM_THRESHOLD, 64 << 20)


def advise_huge_pages(addr: int, n: int) -> bool:
    """Ask for transparent huge pages on ``[addr, addr + n)`` (this process's own heap,
    2 MiB-aligned); False if the kernel refuses."""
    return libc.madvise(addr, n, MADV_HUGEPAGE) == 0


def fault_in(addr: int, n: int) -> None:
    """Have the pages of ``[addr, addr + n)`` (page-aligned, this process's own heap) present
    and private now, rather than one page fault at a time when the code first writes them."""
    if libc.madvise(addr, n, MADV_POPULATE_WRITE) != 0:  # an older kernel: touch every page
        ctypes.memset(addr, 0, n)


def expose_import_paths() -> list[int]:
    """Keep the interpreter's import paths usable after dropping root (``process`` level).

    A venv or pyenv under ``/root`` (mode 0700) is unreachable for uid 65534. Before the drop
    we open each such sys.path entry as an O_PATH fd and import through
    ``/proc/self/fd/N`` instead: following that link skips the permission checks on the
    directories above it, while files below it still need their ordinary "other" bits.
    Returns the fds, which every child must keep open.
    """
    rewrite: dict[str, str] = {}
    for entry in sys.path:
        if (
            entry
            and entry not in rewrite
            and os.path.isdir(entry)
            and not _launcher.world_reachable(entry)
        ):
            fd = os.open(entry, os.O_PATH | os.O_DIRECTORY)
            rewrite[entry] = f"/proc/self/fd/{fd}"
    if not rewrite:
        return []

    def moved(p: str) -> str:
        for old, new in rewrite.items():
            if p == old or p.startswith(old + "/"):
                return new + p[len(old) :]
        return p

    sys.path[:] = [moved(p) for p in sys.path]
    for mod in list(sys.modules.values()):
        paths = getattr(mod, "__path__", None)
        if isinstance(paths, list):
            paths[:] = [moved(p) if isinstance(p, str) else p for p in paths]
    sys.path_importer_cache.clear()
    import importlib

    importlib.invalidate_caches()
    return [int(v.rsplit("/", 1)[1]) for v in rewrite.values()]
