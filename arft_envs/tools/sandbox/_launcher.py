"""Start bubblewrap as an unprivileged user when the host process is root.

Why: ``RLIMIT_NPROC`` is not enforced for host uid 0, even inside a user namespace, so a fork
bomb in a sandbox started by root is unbounded. The fix is to drop to uid/gid 65534 *before*
``exec(bwrap)``. But then the interpreter, the venv and this package must be readable by 65534,
and CI often keeps them under ``/root`` (mode 0700): bwrap would fail to bind them.

How: run as root with ``python -I -S _launcher.py CONFIG_JSON``; in a private mount namespace
(``unshare(CLONE_NEWNS)`` + ``MS_REC|MS_PRIVATE``, so nothing reaches the host) open each source
directory, cover a scratch directory with a small tmpfs, bind every source to
``<stage>/<i>`` there (the fds keep working even if a source lived under the covered path),
then drop all privileges and exec bwrap. bwrap binds ``<stage>/<i>`` back to the original path
inside the sandbox, so paths are unchanged for the interpreter. The mount namespace lives only
as long as the sandbox.

Sources that every user can already reach are not staged; if none need staging, no mount
namespace is created (which also keeps this working where root lacks CAP_SYS_ADMIN).

Argument tokens ``@S<i>`` and ``@S<i>/rest`` stand for staged source ``i``; the host resolves
them itself (with :func:`resolve_tokens`) when no launcher is needed. Standard library only.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import stat
import sys

_CLONE_NEWNS = 0x00020000
_MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 2, 4, 4096, 0x4000, 1 << 18
_TOKEN = re.compile(r"^@S(\d+)(/.*)?$")


def resolve_tokens(argv: list[str], roots: list[str]) -> list[str]:
    """Replace ``@S<i>[/rest]`` tokens in ``argv`` with ``roots[i] + rest``."""
    out = []
    for arg in argv:
        m = _TOKEN.match(arg)
        out.append(roots[int(m.group(1))] + (m.group(2) or "") if m else arg)
    return out


def world_reachable(path: str) -> bool:
    """True if every directory on ``path`` (and ``path`` itself) grants search to others."""
    cur = "/"
    for part in [p for p in path.split("/") if p]:
        cur = os.path.join(cur, part)
        try:
            if not os.stat(cur).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def stage(sources: list[str]) -> list[str]:
    """Make ``sources`` reachable for an unprivileged uid; return the path to use for each."""
    if all(world_reachable(s) for s in sources):
        return list(sources)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
    _check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "make / private")
    fds = [os.open(s, os.O_PATH | os.O_CLOEXEC) for s in sources]
    scratch = next(d for d in ("/tmp", "/mnt", "/run", "/var/tmp") if os.path.isdir(d))
    _check(
        libc.mount(
            b"arft-stage", scratch.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, b"mode=0755,size=64k"
        ),
        f"mount tmpfs on {scratch}",
    )
    staged = []
    for i, fd in enumerate(fds):
        target = f"{scratch}/{i}"
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            os.mkdir(target, 0o755)
        else:
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
        src = f"/proc/self/fd/{fd}".encode()
        _check(libc.mount(src, target.encode(), None, _MS_BIND | _MS_REC, None), f"bind {i}")
        os.close(fd)
        staged.append(target)
    return staged


def main() -> None:
    cfg = json.loads(sys.argv[1])
    try:
        roots = stage(cfg["stage"])
        uid, gid = cfg["uid"], cfg["gid"]
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        argv = resolve_tokens(cfg["argv"], roots)
        os.execv(argv[0], argv)
    except OSError as e:
        sys.stderr.write(f"arft sandbox launcher: {e}\n")
        sys.exit(127)


if __name__ == "__main__":
    main()
