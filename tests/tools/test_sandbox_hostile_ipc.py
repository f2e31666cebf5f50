"""No IPC object and no foreign memory: nothing a call creates outlives it or escapes RLIMIT_AS.

Hostile programs try System V shared memory (more than the address-space limit), message
queues and semaphores, POSIX message queues, ``memfd``, ``/dev/shm`` (after trying to make it
writable), and writing into the memory of bwrap's pid 1 or of the fork-server through
``/proc/<pid>/mem``. Where an object could carry data, call N writes a canary and call N+1
looks for it. Judged on the host: its shared memory does not grow, its ``/proc/sysvipc``
tables and ``/dev/mqueue`` hold no object of ours (also after ``close()``), its ``/dev/shm``
has no file of ours, and pid 1's memory holds no canary. Both levels.
"""

from __future__ import annotations

import os
import secrets
import uuid
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

_MiB = 1 << 20

SYSV = r"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.msgsnd.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.msgrcv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long,
                        ctypes.c_int]
IPC_CREAT, IPC_NOWAIT = 0o1000, 0o4000
def errno_of(r):
    return ctypes.get_errno() if r == -1 else 0
"""


def _sysvipc_keys(kind: str) -> set[int]:
    """Keys of the host IPC namespace's System V objects of ``kind`` (shm, msg, sem)."""
    with open(f"/proc/sysvipc/{kind}") as f:
        return {int(line.split()[0]) for line in list(f)[1:] if line.strip()}


def _host_shmem_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Shmem:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no Shmem line in /proc/meminfo")


def _key() -> int:
    return secrets.randbelow(1 << 30) + 1


@pytest.mark.parametrize("level", ["bwrap", "process"])
def test_sysv_shared_memory_beyond_the_memory_limit_is_refused(
    hostile, sandbox_factory, small_limits, level
):
    # Four 256 MiB segments, touched, under a 768 MiB address-space limit: segments are not
    # counted by RLIMIT_AS, so only refusing them keeps the host's memory bounded.
    limits = replace(small_limits, memory_bytes=768 * _MiB, wall_s=20.0)
    sb = sandbox_factory(level, workers=1, limits=limits)
    key = _key()
    code = SYSV + (
        f"for i in range(4):\n"
        f"    sid = libc.shmget({key} + i, 256 << 20, IPC_CREAT | 0o600)\n"
        "    print('shmget', errno_of(sid))\n"
        "    if sid >= 0:\n"
        "        addr = libc.shmat(sid, None, 0)\n"
        "        ctypes.memset(addr, 1, 256 << 20)\n"
    )
    before = _host_shmem_bytes()
    res = hostile(sb, code)
    grown = _host_shmem_bytes() - before
    assert res.stdout.split() == ["shmget", "1"] * 4, res.describe()
    assert grown < 256 * _MiB  # the attack grows it by 1 GiB; other tests may move it a bit
    assert not {key + i for i in range(4)} & _sysvipc_keys("shm")
    sb.close()
    assert not {key + i for i in range(4)} & _sysvipc_keys("shm")


def test_a_message_queue_does_not_carry_data_to_the_next_call(hostile, any_sb):
    key, canary = _key(), uuid.uuid4().hex
    send = SYSV + (
        f"q = libc.msgget({key}, IPC_CREAT | 0o600)\n"
        "print('msgget', errno_of(q))\n"
        f"msg = ctypes.create_string_buffer(b'\\x01\\0\\0\\0\\0\\0\\0\\0' + {canary[::-1]!r}[::-1].encode())\n"
        "print('msgsnd', errno_of(libc.msgsnd(q, msg, 32, IPC_NOWAIT)))\n"
    )
    receive = SYSV + (
        f"q = libc.msgget({key}, 0)\n"
        "buf = ctypes.create_string_buffer(64)\n"
        "n = libc.msgrcv(q, buf, 56, 0, IPC_NOWAIT)\n"
        "print('got', buf.raw[8:8 + max(n, 0)].decode(errors='replace'), errno_of(q))\n"
    )
    sent = hostile(any_sb, send)
    assert sent.stdout.split() == ["msgget", "1", "msgsnd", "1"], sent.describe()
    got = hostile(any_sb, receive)
    assert canary not in got.stdout and got.stdout.split()[-1] == "1"
    assert key not in _sysvipc_keys("msg")


def test_a_semaphore_set_does_not_outlive_the_call(hostile, any_sb):
    key = _key()
    make = SYSV + f"s = libc.semget({key}, 4, IPC_CREAT | 0o600)\nprint('semget', errno_of(s))\n"
    find = SYSV + f"s = libc.semget({key}, 0, 0)\nprint('found', errno_of(s))\n"
    assert hostile(any_sb, make).stdout.split() == ["semget", "1"]
    assert hostile(any_sb, find).stdout.split() == ["found", "1"]
    assert key not in _sysvipc_keys("sem")


def test_a_posix_message_queue_does_not_carry_data_to_the_next_call(hostile, any_sb):
    name, canary = f"/arft-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    prelude = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "try:\n"
        "    mq_open = libc.mq_open\n"
        "except AttributeError:\n"
        "    mq_open = ctypes.CDLL('librt.so.1', use_errno=True).mq_open\n"
        "mq_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]\n"
    )
    send = prelude + (
        f"q = mq_open({name.encode()!r}, os.O_CREAT | os.O_RDWR, 0o600, None)\n"
        "print('mq_open', ctypes.get_errno() if q == -1 else 0)\n"
        "if q >= 0:\n"
        f"    libc.mq_send(q, {canary[::-1]!r}[::-1].encode(), 32, 0)\n"
    )
    receive = prelude + (
        f"q = mq_open({name.encode()!r}, os.O_RDONLY, 0, None)\n"
        "buf = ctypes.create_string_buffer(8192)\n"
        "n = libc.mq_receive(q, buf, 8192, None) if q >= 0 else -1\n"
        "print('got', buf.raw[:max(n, 0)].decode(errors='replace'), q == -1)\n"
    )
    assert hostile(any_sb, send).stdout.split() == ["mq_open", "1"]
    got = hostile(any_sb, receive)
    assert canary not in got.stdout and got.stdout.split()[-1] == "True"
    assert not Path("/dev/mqueue" + name).exists()


def test_memfd_is_refused(hostile, any_sb):
    code = "import os\ntry:\n    os.memfd_create('x')\n    print('made')\nexcept OSError as e:\n    print(e.errno)"
    assert hostile(any_sb, code).stdout.strip() == "1"


def test_dev_shm_stays_empty_and_read_only_across_calls(hostile, any_sb):
    name, canary = f"arft-shm-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    write = (
        "import os\n"
        "for step, f in [('chmod', lambda: os.chmod('/dev/shm', 0o1777)),\n"
        "                ('xattr', lambda: os.setxattr('/dev/shm', 'user.arft', b'1')),\n"
        f"                ('write', lambda: open('/dev/shm/{name}', 'w').write({canary[::-1]!r}[::-1]))]:\n"
        "    try:\n"
        "        f()\n"
        "        print(step, 'done')\n"
        "    except OSError as e:\n"
        "        print(step, type(e).__name__)\n"
    )
    look = (
        "import os\n"
        f"print(os.path.exists('/dev/shm/{name}'), oct(os.stat('/dev/shm').st_mode & 0o7777))\n"
        "try:\n"
        "    print(os.getxattr('/dev/shm', 'user.arft'))\n"
        "except OSError as e:\n"
        "    print('xattr', type(e).__name__)\n"
    )
    host_mode = os.stat("/dev/shm").st_mode if os.path.isdir("/dev/shm") else None
    res = hostile(any_sb, write)
    assert "done" not in res.stdout, res.stdout
    seen = hostile(any_sb, look).stdout.splitlines()
    assert seen[0].split()[0] == "False" and canary not in "".join(seen)
    if any_sb.level == "bwrap":
        assert seen[0].split()[1] == "0o555"
    assert seen[1].startswith("xattr ")
    assert not Path(f"/dev/shm/{name}").exists()
    if host_mode is not None:
        assert os.stat("/dev/shm").st_mode == host_mode


def _pid1_and_server(sb) -> list[int]:
    """Pids, as a call names them, of the long-lived processes a call must not write into."""
    return [1, 2] if sb.level == "bwrap" else [sb.worker_pids()[0]]


def _memory_holds(pid: int, needle: bytes) -> bool:
    """True if a writable mapping of host process ``pid`` contains ``needle``."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb") as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if "w" not in perms:
                continue
            lo, hi = (int(x, 16) for x in span.split("-"))
            if hi - lo > 256 * _MiB:
                continue
            try:
                mem.seek(lo)
                if needle in mem.read(hi - lo):
                    return True
            except OSError:
                continue
    return False


def test_no_call_can_write_into_bwrap_init_or_the_fork_server(hostile, any_sb):
    targets = _pid1_and_server(any_sb)
    canary = uuid.uuid4().hex
    code = (
        "import os\n"
        f"canary = {canary[::-1]!r}[::-1].encode()\n"
        f"for pid in {targets!r}:\n"
        "    for mode in ('r+b', 'rb'):\n"
        "        try:\n"
        "            with open(f'/proc/{pid}/mem', mode) as m:\n"
        "                for line in open(f'/proc/{pid}/maps'):\n"
        "                    span, perms = line.split()[:2]\n"
        "                    if 'w' in perms:\n"
        "                        m.seek(int(span.split('-')[0], 16)); m.write(canary * 4)\n"
        "            print(pid, mode, 'opened')\n"
        "        except OSError as e:\n"
        "            print(pid, mode, type(e).__name__)\n"
    )
    res = hostile(any_sb, code)
    assert res.status == "ok" and "opened" not in res.stdout, res.stdout
    if any_sb.level == "bwrap":
        # bwrap's pid 1 is dumpable and runs as the host user (or 65534 under root): the
        # host reads its memory. The fork-server is not dumpable, so only the call's own
        # report speaks for it.
        init = psutil.Process(any_sb.worker_pids()[0]).ppid()
        assert not _memory_holds(init, canary.encode())
