"""What a call can do to files and processes of its own uid outside the work dir.

On a non-root host the ``process`` level runs code as the host user, so every file of the
user belongs to the code and Landlock (which governs no metadata) was the only bound. These
tests give the code a file *owned by the uid it runs as* (on a root host: chowned to the
worker's private uid; on a non-root host, as CI's unprivileged pass runs them: simply the
user's own file) and a host process with a secret in its command line, then judge on the
host: the file's mode, owner, times, extended attributes, flags and bytes are unchanged
(its ctime, which any such change moves, included), and the secret never reaches the
output. Both levels; ``.ci/run`` runs this file again as an unprivileged user.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

METADATA_ATTACKS = r"""
import ctypes, fcntl, os, struct
libc = ctypes.CDLL(None, use_errno=True)
def attempt(name, f):
    try:
        f()
        print(name, "done")
    except OSError as e:
        print(name, e.errno)
def setflags():
    with open(PATH, "rb") as fh:
        fcntl.ioctl(fh, 0x40086602, struct.pack("l", 0x00000080))  # FS_IOC_SETFLAGS noatime
def setxattrat():
    r = libc.syscall(463, -100, PATH.encode(), 0, b"user.arft", None, 0)
    if r:
        raise OSError(ctypes.get_errno(), "setxattrat")
try:
    fd = os.open(PATH, os.O_RDONLY)
except OSError:
    fd = -1  # bwrap: the host file is not even visible
attempt("chmod", lambda: os.chmod(PATH, 0o777))
attempt("fchmod", lambda: os.fchmod(fd, 0o777))
attempt("chown", lambda: os.chown(PATH, os.getuid(), os.getgid()))
attempt("fchown", lambda: os.fchown(fd, os.getuid(), os.getgid()))
attempt("utime", lambda: os.utime(PATH, (0, 0)))
attempt("futimens", lambda: os.utime(fd, (0, 0)))
attempt("setxattr", lambda: os.setxattr(PATH, "user.arft", b"1"))
attempt("fsetxattr", lambda: os.setxattr(fd, "user.arft", b"1"))
attempt("setxattrat", setxattrat)
attempt("setflags", setflags)
attempt("truncate", lambda: os.truncate(PATH, 0))
attempt("write", lambda: open(PATH, "r+b").write(b"evil"))
attempt("rename", lambda: os.rename(PATH, PATH + ".moved"))
attempt("link", lambda: os.link(PATH, "linked"))
"""


def _snapshot(path: str) -> tuple:
    st = os.stat(path)
    try:
        xattrs = sorted(os.listxattr(path))
    except OSError:
        xattrs = []
    with open(path, "rb") as f:
        data = f.read()
    return (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_ctime_ns, xattrs, data)


@pytest.fixture
def own_file(any_sb, tmp_path):
    """A host file outside the work dir, owned by the uid the code runs as."""
    os.chmod(tmp_path, 0o755)  # the code must be able to reach it
    path = tmp_path / f"mine-{uuid.uuid4().hex[:8]}.txt"
    path.write_bytes(b"original")
    os.chmod(path, 0o644)
    if os.geteuid() == 0:
        uid = any_sb.worker_info()["uid"]
        # bwrap shows the code uid 65534 whatever it is on the host; the host uid of a bwrap
        # call is 65534 under a root host too.
        os.chown(path, uid, uid)
    return str(path)


def test_metadata_of_files_the_code_owns_outside_its_work_dir_is_unchanged(
    hostile, any_sb, own_file
):
    before = _snapshot(own_file)
    res = hostile(any_sb, f"PATH = {own_file!r}\n" + METADATA_ATTACKS)
    assert res.status == "ok", res.describe()
    results = dict(line.split() for line in res.stdout.splitlines())
    assert len(results) == 14 and "done" not in results.values(), results
    assert _snapshot(own_file) == before
    assert not os.path.exists(own_file + ".moved")


def test_metadata_calls_fail_inside_the_work_dir_too_so_no_mark_survives(hostile, any_sb):
    # One rule everywhere: the wipe deletes what a call created, and no call can leave a
    # mode, owner, time or xattr on what it did not create (the work root, /tmp, /dev/shm).
    code = (
        "import os, shutil\n"
        "open('a', 'w').write('x')\n"
        "shutil.copyfile('a', 'b')\n"
        "print('copyfile ok')\n"
        "for p in ('.', '..', 'a'):\n"
        "    try:\n"
        "        os.chmod(p, 0o2777)\n"
        "        print(p, 'done')\n"
        "    except OSError as e:\n"
        "        print(p, e.errno)\n"
    )
    res = hostile(any_sb, code)
    assert res.stdout.splitlines() == ["copyfile ok", ". 1", ".. 1", "a 1"]


def test_unreviewed_syscall_numbers_fail_with_enosys(hostile, any_sb):
    code = (
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "for nr in (470, 471, 511, 1000):\n"
        "    print(libc.syscall(nr, 0, 0, 0, 0, 0), ctypes.get_errno())\n"
    )
    res = hostile(any_sb, code)
    assert res.stdout.split() == ["-1", "38"] * 4  # ENOSYS


@pytest.fixture
def host_process_with_secret():
    """A host process whose command line and environment hold a secret; (pid, secret)."""
    secret = f"hunter2-{uuid.uuid4().hex}"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; time.sleep(60)", secret],
        env={**os.environ, "ARFT_SECRET": secret},
    )
    yield proc.pid, secret
    proc.kill()
    proc.wait()


def test_host_command_lines_and_process_info_are_not_readable(
    hostile, any_sb, host_process_with_secret
):
    pid, secret = host_process_with_secret
    code = (
        "import os\n"
        "out = []\n"
        f"for p in ['/proc/{pid}/cmdline', '/proc/{pid}/environ', '/proc/{pid}/status',\n"
        f"          '/proc/{os.getpid()}/cmdline', '/proc/{pid}/task/{pid}/cmdline']:\n"
        "    try:\n"
        "        out.append(open(p, 'rb').read().decode(errors='replace'))\n"
        "    except OSError as e:\n"
        "        out.append(type(e).__name__)\n"
        "try:\n"
        "    for name in os.listdir('/proc'):\n"
        "        if name.isdigit():\n"
        "            try:\n"
        "                out.append(open(f'/proc/{name}/cmdline', 'rb').read().decode())\n"
        "            except OSError:\n"
        "                pass\n"
        "except OSError as e:\n"
        "    out.append('listing ' + type(e).__name__)\n"
        "print(out)\n"
        "print(open('/proc/self/status').read().splitlines()[0])\n"
    )
    res = hostile(any_sb, code)
    assert res.status == "ok", res.describe()
    assert secret not in res.stdout and "time.sleep" not in res.stdout
    assert res.stdout.splitlines()[-1].startswith("Name:")  # its own entry stays readable


def test_the_process_level_runs_as_the_host_user_only_when_the_host_is_not_root(process_sb):
    # What this file's other tests stand on: which uid "the code's own files" belong to.
    uid = process_sb.worker_info()["uid"]
    assert uid != 0
    if os.geteuid() != 0:
        assert uid == os.geteuid()


def test_devices_beyond_the_harmless_ones_are_out_of_reach(hostile, any_sb):
    # At the process level /dev is the host's: its terminals, /dev/shm and device nodes.
    code = (
        "import glob, os\n"
        "open('/dev/null', 'w').write('x'); print(len(open('/dev/urandom', 'rb').read(4)))\n"
        "for p in ['/dev/tty', '/dev/ptmx', '/dev/kmsg', '/dev/mem', *glob.glob('/dev/pts/*')]:\n"
        "    try:\n"
        "        open(p, 'rb', buffering=0).close()\n"
        "        print(p, 'opened')\n"
        "    except OSError as e:\n"
        "        print(p, type(e).__name__)\n"
    )
    res = hostile(any_sb, code)
    assert res.status == "ok", res.describe()
    lines = res.stdout.splitlines()
    assert lines[0] == "4"
    opened = [line for line in lines[1:] if line.endswith(" opened")]
    if any_sb.level == "process":
        assert opened == []
    else:  # bwrap's own /dev: /dev/ptmx opens a pty of the sandbox's private devpts
        assert set(opened) <= {"/dev/ptmx opened", "/dev/pts/ptmx opened"}
