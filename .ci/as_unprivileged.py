"""Run a command as an unprivileged user, with this checkout's interpreter still reachable.

CI runs as root, and a venv made by root often rests on an interpreter under ``/root`` (mode
0700): an unprivileged user could not even start it. Usage, as root::

    python .ci/as_unprivileged.py USER -- COMMAND...

In a private mount namespace (nothing reaches the host), every directory that blocks
``USER`` on the way to a needed path (the interpreter's prefixes, the checkout) is covered by
a small tmpfs of mode 0755 holding only the next path component, bind-mounted back from the
original, so every path stays the same and nothing else under it becomes visible. Then all
privileges are dropped (``setgroups([])``, ``setresgid``, ``setresuid``) and ``COMMAND`` is
exec'd with ``HOME`` set to a fresh directory the user owns. Standard library only.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile

_CLONE_NEWNS = 0x00020000
_MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 2, 4, 4096, 0x4000, 1 << 18
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _blocking_dir(path: str) -> tuple[str, str] | None:
    """The first directory on ``path`` that others cannot search, and the component after it."""
    cur = "/"
    for part in [p for p in path.split("/") if p]:
        if not os.stat(cur).st_mode & stat.S_IXOTH:
            return cur, part
        cur = os.path.join(cur, part)
    return None


def expose(paths: list[str]) -> None:
    """Make every directory on each of ``paths`` searchable by others, in this mount
    namespace only; what else the covered directories held stays hidden."""
    while (hit := next(filter(None, map(_blocking_dir, paths)), None)) is not None:
        parent = hit[0]
        prefix = parent.rstrip("/") + "/"
        children = sorted({p[len(prefix) :].split("/")[0] for p in paths if p.startswith(prefix)})
        keep = {c: os.open(prefix + c, os.O_PATH | os.O_CLOEXEC) for c in children}
        mode = b"mode=0755,size=64k"
        _check(
            _libc.mount(b"arft-ci", parent.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, mode),
            f"cover {parent} with a tmpfs",
        )
        for child, fd in keep.items():
            target = prefix + child
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                os.mkdir(target, 0o755)
            else:
                os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
            src = f"/proc/self/fd/{fd}".encode()
            _check(_libc.mount(src, target.encode(), None, _MS_BIND | _MS_REC, None), target)
            os.close(fd)


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: as_unprivileged.py USER -- COMMAND...")
    user, argv = pwd.getpwnam(sys.argv[1]), sys.argv[3:]
    if os.geteuid() != 0:
        sys.exit("as_unprivileged.py must run as root; a non-root user runs COMMAND directly")
    needed = {os.getcwd(), os.path.realpath(argv[0])}
    needed |= {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    _check(_libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(_libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "make / private")
    expose(sorted(needed))
    home = tempfile.mkdtemp(prefix=f"arft-{user.pw_name}-home-")
    os.chown(home, user.pw_uid, user.pw_gid)
    os.setgroups([])
    os.setresgid(user.pw_gid, user.pw_gid, user.pw_gid)
    os.setresuid(user.pw_uid, user.pw_uid, user.pw_uid)
    if os.getuid() == 0 or os.geteuid() == 0:
        sys.exit("as_unprivileged.py: the privilege drop did not take")
    unreadable = [p for p in sorted(needed) if not os.access(p, os.R_OK | os.X_OK)]
    if unreadable:
        sys.exit(
            f"as_unprivileged.py: {user.pw_name} cannot read {unreadable}; make the checkout "
            "and its .venv readable by others (a umask of 022 when cloning and installing)"
        )
    env = dict(os.environ, HOME=home, TMPDIR=home, USER=user.pw_name, LOGNAME=user.pw_name)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # the checkout belongs to root
    try:
        rc = subprocess.run(argv, env=env).returncode
    finally:
        shutil.rmtree(home, ignore_errors=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
