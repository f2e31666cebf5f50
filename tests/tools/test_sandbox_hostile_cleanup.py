"""Code-controlled state must not crash the trusted code that cleans up after a call.

Each program leaves something awkward behind for the cleanup: a directory tree thousands of
levels deep (deeper than ``PATH_MAX``), directories it cannot list, thousands of image files
whose names cannot be returned, file-flag and mode tricks on the work root, symlink loops, a
4 KiB name. Judged on the host, at both levels: the call returns (``run`` never raises), the
model reads a short message with the call's own output and no traceback of the sandbox, the
fork-server survives, the next call runs normally in an empty work dir, and after ``close()``
no temp dir of the sandbox is left on the host.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest

from arft_envs.tools.sandbox import SandboxLimits

#: Room to make the mess: thousands of files cost seconds of CPU on a loaded machine.
LIMITS = SandboxLimits(cpu_s=10, wall_s=30, memory_bytes=1 << 30, stdout_bytes=4096)

LEVELS = ["bwrap", "process"]
WHERE = "import os\nprint('root', os.path.dirname(os.getcwd()))\n"

DEEP_TREE = """
import os
for i in range(DEPTH):
    os.mkdir("d")
    os.chdir("d")
open("bottom.txt", "w").write("x")
print("made")
"""

PROGRAMS = {
    "deep-tree": DEEP_TREE.replace("DEPTH", "1500"),
    "deeper-than-path-max": DEEP_TREE.replace('"d"', '"d" * 200').replace("DEPTH", "60"),
    "unlistable-dirs": (
        "import os\n"
        "os.mkdir('wx', 0o300)\n"  # write and search, no read: the cleanup cannot list it
        "open('wx/f', 'w').write('x')\n"
        "os.mkdir('wx/sub', 0o300)\n"
        "open('wx/sub/g', 'w').write('x')\n"
        "os.mkdir('none', 0)\n"
        "os.umask(0o777)\n"
        "open('nomode.png', 'w').write('x')\n"
        "print('made')\n"
    ),
    "many-unusable-image-names": (
        "for i in range(5000):\n"
        "    open(f'bad\\t{i:04}' + 'x' * 200 + '.png', 'w').close()\n"
        "import cv2, numpy as np\n"
        "cv2.imwrite('good.png', np.zeros((2, 2, 3), np.uint8))\n"
        "print('made')\n"
    ),
    "many-files": "for i in range(5000):\n    open(f'f{i}', 'w').close()\nprint('made')\n",
    "work-root-modes": (
        "import os\n"
        "for path, mode in (('..', 0), ('.', 0), ('..', 0o7777), ('.', 0o2700)):\n"
        "    try:\n"
        "        os.chmod(path, mode)\n"
        "    except OSError as e:\n"
        "        print('chmod', path, type(e).__name__)\n"
        "os.mkdir('sticky', 0o3777)\n"
        "print('made')\n"
    ),
    "file-flags": (
        "import fcntl, os, struct\n"
        "FS_IOC_SETFLAGS = 0x40086602\n"
        "open('f', 'w').write('x')\n"
        "os.mkdir('d')\n"
        "for path in ('f', 'd', '..'):\n"
        "    for flags in (0x10, 0x20, 0x40):\n"  # immutable, append-only, nodump
        "        try:\n"
        "            fd = os.open(path, os.O_RDONLY)\n"
        "            fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack('l', flags))\n"
        "            print('set', path, flags)\n"
        "        except OSError as e:\n"
        "            print('flags', path, flags, type(e).__name__)\n"
        "print('made')\n"
    ),
    "symlink-loops": (
        "import os\n"
        "os.symlink('b', 'a')\n"
        "os.symlink('a', 'b')\n"
        "os.symlink('loop.png', 'loop.png')\n"
        "os.symlink('.', 'self')\n"
        "os.symlink('..', 'up')\n"
        "os.symlink('/', 'slash')\n"
        "os.mkdir('d')\n"
        "os.symlink('../d', 'd/back')\n"
        "os.mkfifo('fifo.png')\n"
        "print('made')\n"
    ),
    "long-names": (
        "import os\n"
        "try:\n"
        "    open('x' * 4096, 'w')\n"
        "except OSError as e:\n"
        "    print('4k name', type(e).__name__)\n"
        "open('y' * 255, 'w').write('x')\n"
        "os.mkdir('z' * 255)\n"
        "open(os.path.join('z' * 255, 'w' * 251 + '.png'), 'w').write('not an image')\n"
        "print('made')\n"
    ),
}


def _host_root(sb) -> str:
    res = sb.run(WHERE)
    assert res.ok, res.describe()
    return res.stdout.split("root ", 1)[1].strip()


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("case", sorted(PROGRAMS))
def test_the_cleanup_survives_what_the_code_left(sandbox_factory, healthy, level, case):
    sb = sandbox_factory(level, workers=1, limits=LIMITS)
    root = _host_root(sb) if level == "process" else None
    servers = sb.worker_pids()
    res = sb.run(PROGRAMS[case], timeout_s=30)
    message = res.describe()
    assert "made" in res.stdout, message  # the call's own output reaches the model
    assert res.status in ("ok", "bad_result"), message
    assert len(message) < 2000, message  # short, whatever the code left
    assert "Traceback" not in message and "worker.py" not in message, message
    healthy(sb, servers)  # same fork-server, no process left, next call in an empty dir
    again = sb.run(PROGRAMS[case], timeout_s=30)  # the same mess again, on a clean slate
    assert "made" in again.stdout, again.describe()
    sb.close()
    if root is not None:
        assert not os.path.lexists(root), f"close() left {root} on the host"


@pytest.mark.parametrize("level", LEVELS)
def test_thousands_of_unusable_image_names_make_one_short_reason(sandbox_factory, level):
    sb = sandbox_factory(level, workers=1, limits=LIMITS)
    res = sb.run(PROGRAMS["many-unusable-image-names"], timeout_s=30)
    assert res.status == "bad_result" and res.stdout.strip() == "made"
    assert list(res.images) == ["good.png"]  # the usable image still comes back
    assert "unusable names" in res.reason and "and 4997 more" in res.reason
    assert len(res.reason) < 500


@pytest.mark.parametrize("level", LEVELS)
def test_the_work_root_keeps_its_mode_and_attributes(sandbox_factory, level):
    sb = sandbox_factory(level, workers=1, limits=LIMITS)
    probe = "import os\nst = os.stat('..')\nprint(oct(st.st_mode), sorted(os.listxattr('..')))"
    before = sb.run(probe)
    assert before.ok, before.describe()
    res = sb.run(PROGRAMS["work-root-modes"])
    assert "made" in res.stdout, res.describe()
    after = sb.run(probe)
    assert after.stdout == before.stdout


@pytest.mark.parametrize("level", LEVELS)
def test_a_worker_killed_mid_call_leaves_no_temp_dir(sandbox_factory, level):
    """The call builds a deep tree and waits; its fork-server is killed from outside. The
    call ends with a short message, the host removes the tree with the worker's temp dir,
    and the next call gets a new worker."""
    sb = sandbox_factory(level, workers=1, limits=LIMITS)
    root = _host_root(sb) if level == "process" else None
    (server,) = sb.worker_pids()
    code = DEEP_TREE.replace("DEPTH", "1500") + "import time\ntime.sleep(60)\n"
    done = []
    caller = threading.Thread(target=lambda: done.append(sb.run(code, timeout_s=60)))
    caller.start()
    end = time.monotonic() + 60
    while not _tree_is_deep(server) and time.monotonic() < end:  # a liveness wait
        time.sleep(0.05)
    os.kill(server, signal.SIGKILL)
    caller.join()
    (res,) = done
    assert res.status == "killed" and len(res.describe()) < 500, res.describe()
    if root is not None:
        assert not os.path.lexists(root), f"the dead worker's {root} was left on the host"
    assert sb.run("print('next')").stdout == "next\n"
    sb.close()


def _tree_is_deep(server: int) -> bool:
    """True once the call's process has gone 1,500 levels down (its cwd says so)."""
    for child in psutil.Process(server).children(recursive=True):
        try:
            if child.cwd().count("/d") >= 1500:
                return True
        except psutil.Error:
            continue
    return False
