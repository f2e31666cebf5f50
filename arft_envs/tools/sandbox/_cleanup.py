"""Deleting what a call left behind, whatever shape the code gave it. Trusted code.

Used by the fork-server after every call (the work area must be as it was before the call)
and by the host when it removes a ``process``-level worker's temp dir. Like ``_protocol`` it
is imported inside the sandbox as a top-level module, so it uses only the standard library.

Code controls the shape of what it leaves: trees thousands of levels deep, paths longer than
``PATH_MAX``, directories of mode 000, symlink loops, millions of entries. So this walk

* is iterative, never recursive (no ``RecursionError`` for any depth);
* works relative to open directory fds, never by path (no ``ENAMETOOLONG``), and keeps at
  most :data:`MAX_OPEN_DIRS` of them open: a subtree deeper than that is first moved up, by
  ``rename`` into the directory being removed, and taken apart from there;
* never follows a symlink and never leaves the file system it started on;
* gives the owner back ``rwx`` on a directory the code made unreadable or unwritable;
* stops at a deadline and says it did not finish, instead of running on;
* never raises for anything it finds on disk: every answer is a ``bool``.

It also puts back the metadata of what it keeps: the mode bits and extended attributes of the
work root and of every directory that was there before the first call (:func:`snapshot`,
:func:`wipe`).
"""

from __future__ import annotations

import errno
import os
import stat
import time

#: The most directory fds a walk holds open; deeper subtrees are moved up first.
MAX_OPEN_DIRS = 48

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_BATCH = 4096  # directory entries read per listing


class _OutOfTime(Exception):
    pass


def _open_dir(parent_fd: int | None, name: str) -> int | None:
    """An fd for directory ``name`` (in ``parent_fd``), made enterable if the code chmod-ed it;
    None if it is not a directory on this walk's terms (a symlink, gone, not ours)."""
    for attempt in range(2):
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        except PermissionError:
            if attempt:
                return None
            try:
                st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    return None
                os.chmod(name, stat.S_IMODE(st.st_mode) | 0o700, dir_fd=parent_fd)
            except (OSError, NotImplementedError):
                return None
        except OSError:
            return None
    return None


def _make_writable(fd: int) -> None:
    """Give the owner rwx on the directory ``fd`` (needed to delete entries in it)."""
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o700 != 0o700:
            os.chmod(fd, mode | 0o700)
    except OSError:
        pass


def _list(fd: int) -> list[tuple[str, bool]]:
    """Up to ``_BATCH`` entries of directory ``fd`` as ``(name, is_dir)``; never follows links."""
    out = []
    try:
        with os.scandir(fd) as it:
            for e in it:
                try:
                    is_dir = e.is_dir(follow_symlinks=False)
                except OSError:
                    is_dir = False
                out.append((e.name, is_dir))
                if len(out) >= _BATCH:
                    break
    except OSError:
        pass
    return out


def _delete_contents(top_fd: int, deadline: float) -> bool:
    """Delete everything inside directory ``top_fd``; True when it is empty afterwards."""
    dev = os.fstat(top_fd).st_dev
    # Each frame: [fd, name in the parent frame's dir, names that could not be deleted].
    stack: list[list] = [[top_fd, "", set()]]
    moved = 0
    steps = 0
    try:
        while stack:
            fd, _, stuck = stack[-1]
            entries = [(n, d) for n, d in _list(fd) if n not in stuck]
            descended = False
            for name, is_dir in entries:
                steps += 1
                if steps % 256 == 0 and time.monotonic() > deadline:
                    raise _OutOfTime
                if not is_dir:
                    if not _unlink(fd, name):
                        stuck.add(name)
                    continue
                try:
                    os.rmdir(name, dir_fd=fd)  # an empty directory: no need to enter it
                    continue
                except OSError as e:
                    if e.errno == errno.ENOENT:
                        continue
                    if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.EACCES, errno.EPERM):
                        stuck.add(name)
                        continue
                if len(stack) >= MAX_OPEN_DIRS:
                    # Too deep to hold another fd: move this subtree up into the top dir and
                    # take it apart from there later.
                    for _ in range(8):  # the code may have taken the name already
                        moved += 1
                        try:
                            os.rename(name, f".arft-up-{moved}", src_dir_fd=fd, dst_dir_fd=top_fd)
                            break
                        except OSError:
                            pass
                    else:
                        stuck.add(name)
                    continue
                sub = _open_dir(fd, name)
                if sub is None or os.fstat(sub).st_dev != dev:
                    if sub is not None:
                        os.close(sub)
                    stuck.add(name)
                    continue
                _make_writable(sub)
                stack.append([sub, name, set()])
                descended = True
                break
            if descended:
                continue
            if entries and len(entries) >= _BATCH:
                continue  # more entries than one listing returned: list again
            if len(stack) == 1:
                # The top dir: subtrees moved up into it may have arrived since we listed it.
                if not [n for n, _ in _list(top_fd) if n not in stuck]:
                    return not stuck
                continue
            fd, name, stuck_here = stack.pop()
            os.close(fd)
            parent_fd, _, parent_stuck = stack[-1]
            if stuck_here:
                parent_stuck.add(name)
                continue
            try:
                os.rmdir(name, dir_fd=parent_fd)
            except OSError:
                parent_stuck.add(name)
        return True
    except _OutOfTime:
        return False
    finally:
        for frame in stack[1:]:
            try:
                os.close(frame[0])
            except OSError:
                pass


def _unlink(dir_fd: int, name: str) -> bool:
    try:
        os.unlink(name, dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return True
    except PermissionError:
        _make_writable(dir_fd)  # the code took the owner's write bit off the directory
        try:
            os.unlink(name, dir_fd=dir_fd)
            return True
        except OSError:
            return False
    except OSError:
        return False


def _remove_entry(parent_fd: int | None, name: str, deadline: float) -> bool:
    """Remove ``name`` in ``parent_fd`` (a file, a link, or a directory and all below it)."""
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        return _unlink(parent_fd, name) if parent_fd is not None else _unlink_path(name)
    fd = _open_dir(parent_fd, name)
    if fd is None:
        return False
    try:
        _make_writable(fd)
        if not _delete_contents(fd, deadline):
            return False
    finally:
        os.close(fd)
    try:
        os.rmdir(name, dir_fd=parent_fd)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _unlink_path(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


def remove_tree(path: str, timeout_s: float = 10.0) -> bool:
    """Delete ``path`` and everything below it; True when it is gone. Never raises."""
    try:
        return _remove_entry(None, path, time.monotonic() + timeout_s)
    except Exception:  # noqa: BLE001 - cleanup must never raise into its caller
        return False


# --- the work area: keep what was there before the first call, restore its metadata ---------


def _xattrs(fd: int) -> frozenset[str]:
    try:
        return frozenset(os.listxattr(fd))
    except OSError:
        return frozenset()


def snapshot(root: str) -> dict[str, tuple[int, frozenset[str]]]:
    """What the work area holds before any call: relative path -> (mode bits, xattr names).

    ``""`` is ``root`` itself. Other mounts under it (binds bwrap places in /tmp) are
    recorded but not entered.
    """
    out: dict[str, tuple[int, frozenset[str]]] = {}
    top = os.open(root, _DIR_FLAGS)
    dev = os.fstat(top).st_dev
    stack = [(top, "")]
    try:
        while stack:
            fd, rel = stack.pop()
            st = os.fstat(fd)
            out[rel] = (stat.S_IMODE(st.st_mode), _xattrs(fd))
            for name, is_dir in _list(fd):
                sub_rel = os.path.join(rel, name)
                if not is_dir:
                    out[sub_rel] = (-1, frozenset())
                    continue
                sub = _open_dir(fd, name)
                if sub is None:
                    out[sub_rel] = (-1, frozenset())
                elif os.fstat(sub).st_dev != dev:
                    out[sub_rel] = (-1, frozenset())  # another mount: leave it alone
                    os.close(sub)
                else:
                    stack.append((sub, sub_rel))
            if fd != top:
                os.close(fd)
    finally:
        for fd, _ in stack:
            if fd != top:
                os.close(fd)
        os.close(top)
    return out


def wipe(root: str, keep: dict[str, tuple[int, frozenset[str]]], timeout_s: float = 10.0) -> bool:
    """Make ``root`` hold exactly what :func:`snapshot` recorded in ``keep`` again.

    Deletes every entry not in ``keep``; on each kept directory (``root`` included) puts back
    its mode bits and removes extended attributes it did not have. True when the work area is
    as recorded. Never raises.
    """
    deadline = time.monotonic() + timeout_s
    try:
        top = _open_dir(None, root)
        if top is None:
            return False
        clean = True
        stack = [(top, "")]
        try:
            while stack:
                fd, rel = stack.pop()
                clean &= _restore_metadata(fd, *keep.get(rel, (0o700, frozenset())))
                failed: set[str] = set()
                while True:
                    batch = [(n, d) for n, d in _list(fd) if n not in failed]
                    extra = [(n, d) for n, d in batch if os.path.join(rel, n) not in keep]
                    for name, _ in extra:
                        if not _remove_entry(fd, name, deadline):
                            clean = False
                            failed.add(name)
                    if not extra or len(batch) < _BATCH:
                        break
                    if time.monotonic() > deadline:
                        return False
                for name, is_dir in batch:
                    sub_rel = os.path.join(rel, name)
                    if is_dir and sub_rel in keep and keep[sub_rel][0] >= 0:
                        sub = _open_dir(fd, name)
                        if sub is not None:
                            stack.append((sub, sub_rel))
                        else:
                            clean = False
                if fd != top:
                    os.close(fd)
        finally:
            for fd, _ in stack:
                if fd != top:
                    os.close(fd)
            os.close(top)
        return clean
    except Exception:  # noqa: BLE001 - cleanup must never raise into its caller
        return False


def _restore_metadata(fd: int, mode: int, xattrs: frozenset[str]) -> bool:
    """Put back a kept directory's mode bits (setgid and sticky included) and drop the
    extended attributes it did not have; True if it now matches."""
    ok = True
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != mode:
            os.chmod(fd, mode)
    except OSError:
        ok = False
    for name in _xattrs(fd) - xattrs:
        try:
            os.removexattr(fd, name)
        except OSError:
            ok = False
    return ok
