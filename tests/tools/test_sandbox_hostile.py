"""Every hostile or buggy input of shared/research/sandbox.md §6, one test each.

Each test checks the outcome the code sees *and* the host side: files it tried to write do not
exist on the host, secrets do not appear in its output, a loopback listener got no connection,
the fork-server survived, and no process of the call remains (``assert_healthy``). Most cases
run on the ``bwrap`` level; claims the ``process`` level shares run on both (``any_sb``).
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

SANDBOX_PKG = Path(__file__).resolve().parents[2] / "arft_envs" / "tools" / "sandbox"
CPU_TEST_WALL_S = 20.0  # far above the 1 s CPU limit, so a busy machine cannot turn a CPU
#                         kill into a wall-clock timeout
STDOUT_BYTES = 4096  # conftest.STDOUT_BYTES


@pytest.fixture
def run(hostile):
    """``run(sb, code, **kwargs)``: run hostile code, then check the sandbox is healthy."""
    return hostile


# --- CPU and time ---------------------------------------------------------------------------


def test_busy_loop_is_killed_by_the_cpu_limit(run, any_sb):
    res = run(any_sb, "while True: pass", timeout_s=CPU_TEST_WALL_S)
    assert res.status == "killed" and "CPU time" in res.reason


def test_sleep_hits_the_wall_clock_timeout(run, any_sb):
    res = run(any_sb, "import time; time.sleep(10**6)", timeout_s=0.5)
    assert res.status == "timeout" and "wall-clock" in res.reason


def test_ignoring_sigxcpu_still_gets_the_hard_cpu_kill(run, bwrap_sb):
    code = "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True: pass"
    res = run(bwrap_sb, code, timeout_s=CPU_TEST_WALL_S)
    assert res.status == "killed" and "CPU time" in res.reason


def test_stopping_itself_with_sigstop_times_out(run, bwrap_sb):
    res = run(bwrap_sb, "import os, signal; os.kill(os.getpid(), signal.SIGSTOP)", timeout_s=0.5)
    assert res.status == "timeout"


def test_itimer_signal_storm_ends_within_limits(run, bwrap_sb):
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGALRM, lambda *a: time.sleep(0.001))\n"
        "signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)\n"
        "while True: pass\n"
    )
    res = run(bwrap_sb, code, timeout_s=CPU_TEST_WALL_S)
    assert res.status in ("killed", "timeout", "error")


def test_nice_only_affects_the_call(run, bwrap_sb):
    res = run(bwrap_sb, "import os; print(os.nice(19))")
    assert res.status == "ok" and res.stdout.strip() == "19"


# --- processes and threads ------------------------------------------------------------------


def test_fork_bomb_is_stopped_by_the_process_limit(run, any_sb):
    res = run(any_sb, "import os\nwhile True: os.fork()")
    assert res.status in ("killed", "error")  # fork() fails with EAGAIN: no timeout


def test_fork_bomb_of_sleepers_is_swept(run, any_sb):
    code = "import os, time\nfor _ in range(100):\n    if os.fork() == 0:\n        time.sleep(1000)"
    res = run(any_sb, code)
    assert res.status == "killed" and "process" in res.reason


def test_thread_bomb_cannot_start_new_threads(run, any_sb):
    code = (
        "import threading, time\n"
        "for _ in range(10_000):\n"
        "    threading.Thread(target=time.sleep, args=(100,), daemon=True).start()"
    )
    res = run(any_sb, code)
    assert res.status == "killed" and "can't start new thread" in res.stderr


def test_orphan_that_tries_setsid_is_killed_and_call_returns_promptly(run, any_sb):
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    try:\n"
        "        os.setsid()\n"
        "    except OSError as e:\n"
        "        print('setsid', e.errno, flush=True)\n"
        "    time.sleep(1000)\n"
        "print('parent done')\n"
    )
    res = run(any_sb, code)
    # "ok", not "timeout": the call ended when its own child exited, although the orphan
    # still held the stdout pipe open.
    assert res.status == "ok" and "parent done" in res.stdout


def test_unreaped_zombies_are_reaped(run, any_sb):
    res = run(any_sb, "import os\nfor _ in range(5):\n    if os.fork() == 0: os._exit(0)")
    assert res.status == "ok"


def test_daemon_thread_sleeping_forever_does_not_block_the_result(run, bwrap_sb):
    code = "import threading, time\nthreading.Thread(target=time.sleep, args=(1000,), daemon=True).start()\nprint('ok')"
    res = run(bwrap_sb, code)
    assert res.status == "ok" and res.stdout == "ok\n"


def test_non_daemon_thread_sleeping_forever_does_not_block_the_result(run, bwrap_sb):
    code = "import threading, time\nthreading.Thread(target=time.sleep, args=(1000,)).start()\nprint('ok')"
    res = run(bwrap_sb, code)
    assert res.status == "ok" and res.stdout == "ok\n"


def test_subprocess_runs_confined(run, bwrap_sb):
    res = run(
        bwrap_sb,
        "import subprocess; print(subprocess.run(['ls', '/'], capture_output=True, text=True).stdout)",
    )
    assert res.status == "ok"
    listing = res.stdout.split()
    assert "usr" in listing and "etc" not in listing and "home" not in listing


def test_multiprocessing_pool_fails_cleanly(run, bwrap_sb):
    res = run(bwrap_sb, "import multiprocessing as mp\nprint(mp.Pool(8).map(abs, [1, 2]))")
    assert res.status in ("error", "killed")


def test_opencv_thread_pool_is_bounded(run, any_sb):
    code = (
        "import cv2, numpy as np\n"
        "cv2.setNumThreads(64)\n"
        "a = np.random.rand(1000, 1000).astype(np.float32)\n"
        "for _ in range(3):\n"
        "    a = cv2.GaussianBlur(a, (31, 31), 0)\n"
        "print('done')\n"
    )
    res = run(any_sb, code)
    assert res.status in ("ok", "error", "killed")


# --- memory ---------------------------------------------------------------------------------


def test_huge_bytearray_is_a_memory_error(run, any_sb):
    res = run(any_sb, "b = bytearray(50 * 1024**3)")
    assert res.status == "killed" and "memory" in res.reason and "MemoryError" in res.stderr


def test_incremental_allocation_hits_memory_or_cpu_limit(run, bwrap_sb):
    code = "l = []\nwhile True: l.append(bytearray(64 * 1024 * 1024))"
    res = run(bwrap_sb, code, timeout_s=CPU_TEST_WALL_S)
    assert res.status == "killed" and ("memory" in res.reason or "CPU" in res.reason)


def test_numpy_huge_zeros_is_a_memory_error(run, bwrap_sb):
    res = run(bwrap_sb, "import numpy as np; np.zeros((100000, 100000))")
    assert res.status == "killed" and "memory" in res.reason


def test_cv2_huge_resize_is_a_memory_error(run, bwrap_sb):
    code = "import cv2, numpy as np; cv2.resize(np.zeros((10, 10, 3), np.uint8), (60000, 60000))"
    res = run(bwrap_sb, code)
    assert res.status == "killed" and "memory" in res.reason


def test_infinite_recursion_is_a_recursion_error(run, bwrap_sb):
    res = run(bwrap_sb, "def f(n): return f(n + 1)\nf(0)")
    assert res.status == "error" and "RecursionError" in res.stderr


def test_raised_recursion_limit_does_not_hang_the_host(run, bwrap_sb):
    res = run(bwrap_sb, "import sys\nsys.setrecursionlimit(10**8)\ndef f(n): return f(n + 1)\nf(0)")
    assert res.status in ("killed", "error", "signal", "timeout")


def test_deeply_nested_expression_fails_cleanly(run, bwrap_sb):
    res = run(bwrap_sb, "eval('(' * 10**6 + ')' * 10**6)")
    assert res.status == "error"


def test_monkeypatching_the_warm_parent_affects_only_that_call(run, bwrap_sb):
    res = run(bwrap_sb, "import cv2, sys\ncv2.GaussianBlur = None\nsys.modules['cv2'] = None")
    assert res.status == "ok"  # assert_healthy's next call used cv2.GaussianBlur


# --- output ---------------------------------------------------------------------------------


def test_print_flood_is_truncated_and_marked(run, any_sb):
    res = run(any_sb, "while True: print('x' * 10000)")
    assert res.status in ("killed", "timeout")
    assert res.stdout_truncated and "…[truncated" in res.stdout
    assert len(res.stdout.encode()) < STDOUT_BYTES + 100


def test_raw_fd_flood_is_truncated(run, bwrap_sb):
    res = run(bwrap_sb, "import os\nwhile True: os.write(1, b'y' * 65536)", timeout_s=1)
    assert res.status in ("killed", "timeout") and res.stdout_truncated


def test_stderr_flood_is_truncated(run, bwrap_sb):
    res = run(bwrap_sb, "import sys\nfor _ in range(10000): sys.stderr.write('e' * 1000)")
    assert res.status == "ok" and res.stderr_truncated and res.stderr.endswith("bytes]")


def test_non_utf8_nul_and_ansi_bytes_are_escaped(run, any_sb):
    res = run(any_sb, "import sys; sys.stdout.buffer.write(b'\\xff\\xfe\\x00\\x1b[31mred\\n')")
    assert res.status == "ok"
    assert res.stdout.startswith("\\xff\\xfe\x00\x1b[31mred")


def test_input_reads_eof(run, any_sb):
    res = run(any_sb, "input()")
    assert res.status == "error" and "EOFError" in res.stderr


# --- exits and signals ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "code,status,exit_code",
    [
        ("import sys; sys.exit(0)", "ok", 0),
        ("import sys; sys.exit(3)", "error", 3),
        ("exit(5)", "error", 5),
        ("import os; os._exit(7)", "error", 7),
        ("import sys; sys.exit('bye')", "error", 1),
    ],
)
def test_exit_codes_are_reported_and_never_kill_the_worker(run, bwrap_sb, code, status, exit_code):
    res = run(bwrap_sb, code)
    assert (res.status, res.exit_code) == (status, exit_code)


def test_segfault_is_reported_as_a_signal(run, any_sb):
    res = run(any_sb, "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    assert (res.status, res.signal) == ("signal", 11)


def test_ctypes_null_dereference_is_a_signal(run, bwrap_sb):
    res = run(bwrap_sb, "import ctypes; ctypes.string_at(0)")
    assert (res.status, res.signal) == ("signal", 11)


# --- files ----------------------------------------------------------------------------------


def test_write_into_usr_is_refused(run, any_sb):
    name = f"arft-pwned-{uuid.uuid4().hex}"
    res = run(any_sb, f"open('/usr/lib/{name}', 'w').write('x')")
    assert res.status == "error" and ("Read-only" in res.stderr or "Permission" in res.stderr)
    assert not Path(f"/usr/lib/{name}").exists()


def test_overwriting_the_worker_code_is_refused(run, bwrap_sb):
    before = hashlib.sha256((SANDBOX_PKG / "worker.py").read_bytes()).hexdigest()
    res = run(bwrap_sb, "open('/sbx/worker.py', 'w').write('pwned')")
    assert res.status == "error" and "Read-only" in res.stderr
    assert hashlib.sha256((SANDBOX_PKG / "worker.py").read_bytes()).hexdigest() == before


def test_write_to_root_is_refused(run, any_sb):
    name = f"/arft-evil-{uuid.uuid4().hex}"
    res = run(any_sb, f"open({name!r}, 'w').write('x')")
    assert res.status == "error"
    assert not Path(name).exists()


def test_writes_outside_the_work_dir_never_reach_the_host(run, any_sb, tmp_path):
    """bwrap: /tmp is the sandbox's own tmpfs. process: Landlock confines writes, if present."""
    marker = f"arft-marker-{uuid.uuid4().hex}"
    target = tmp_path / marker
    os.chmod(tmp_path, 0o777)  # even a world-writable host dir must stay untouched
    code = (
        f"for p in ['/tmp/{marker}', '/dev/shm/{marker}', {str(target)!r}]:\n"
        "    try:\n"
        "        open(p, 'w').write('x')\n"
        "    except OSError as e:\n"
        "        print(p, type(e).__name__)\n"
    )
    if any_sb.level == "process" and not any_sb.worker_info().get("landlock"):
        pytest.skip("this kernel has no Landlock: the process level cannot confine writes")
    run(any_sb, code)
    assert not Path(f"/tmp/{marker}").exists()
    assert not Path(f"/dev/shm/{marker}").exists()
    assert not target.exists()


def test_files_written_anywhere_do_not_survive_the_call(run, bwrap_sb, tmp_mount_points):
    run(bwrap_sb, "import os\nopen('/tmp/persist', 'w').write('x')\nos.mkdir('/tmp/d')")
    res = run(
        bwrap_sb, "import os; print(sorted(os.listdir('/tmp')), os.path.basename(os.getcwd()))"
    )
    listing, cwd = res.stdout.rsplit(" ", 1)
    leftovers = sorted(set(eval(listing)) - tmp_mount_points)
    assert leftovers == [cwd.strip()]  # only this call's own work dir


def test_filling_dev_shm_is_refused(run, bwrap_sb):
    res = run(bwrap_sb, "open('/dev/shm/x', 'wb').write(b'x' * 10**6)")
    assert res.status == "error" and "Permission" in res.stderr


def test_one_huge_file_hits_the_file_size_limit(run, any_sb):
    res = run(any_sb, "open('big', 'wb').write(b'x' * 100 * 1024 * 1024)")
    assert res.status == "killed" and "file size" in res.reason


def test_many_files_fill_the_tmpfs_and_are_cleaned_up(run, bwrap_sb):
    code = "for i in range(20):\n    open(f'f{i}', 'wb').write(b'x' * 7 * 1024 * 1024)"
    res = run(bwrap_sb, code)  # assert_healthy checks the next work dir is empty
    assert res.status == "killed" and "space" in res.reason
    res = bwrap_sb.run("open('again', 'wb').write(b'x' * 7 * 1024 * 1024)")
    assert res.status == "ok", "the tmpfs was not freed after the previous call"


def test_many_open_files_hit_the_descriptor_limit(run, any_sb):
    res = run(any_sb, "fs = [open('/dev/null') for _ in range(100_000)]")
    assert res.status == "killed" and "open-file" in res.reason


def test_etc_shadow_is_not_visible(run, bwrap_sb):
    res = run(bwrap_sb, "print(open('/etc/shadow').read())")
    assert res.status == "error" and "FileNotFoundError" in res.stderr


def test_host_files_and_home_are_not_visible(run, bwrap_sb, tmp_path):
    secret = f"secret-{uuid.uuid4().hex}"
    (tmp_path / "secret.txt").write_text(secret)
    os.chmod(tmp_path, 0o755)
    os.chmod(tmp_path / "secret.txt", 0o644)
    code = (
        "import os\n"
        f"for p in [{str(tmp_path / 'secret.txt')!r}, '/root/.bashrc', '/etc/passwd']:\n"
        "    try:\n"
        "        print(open(p).read())\n"
        "    except OSError as e:\n"
        "        print(p, type(e).__name__)\n"
        "print(sorted(os.listdir('/')))\n"
    )
    res = run(bwrap_sb, code)
    assert secret not in res.stdout
    assert "FileNotFoundError" in res.stdout and "root:" not in res.stdout
    root_listing = eval(res.stdout.splitlines()[-1])
    assert "home" not in root_listing and "etc" not in root_listing


def test_host_environment_secret_is_not_visible(run, monkeypatch, sandbox_factory):
    secret = f"sk-{uuid.uuid4().hex}"
    monkeypatch.setenv("HOST_API_KEY", secret)
    code = (
        "import os\n"
        "print(dict(os.environ))\n"
        "for p in ['/proc/1/environ', f'/proc/{os.getppid()}/environ']:\n"
        "    try:\n"
        "        print(open(p, 'rb').read())\n"
        "    except OSError as e:\n"
        "        print(p, type(e).__name__)\n"
    )
    for level in ("bwrap", "process"):
        res = run(sandbox_factory(level, workers=1), code)
        assert res.status == "ok", res.describe()
        assert secret not in res.stdout and "HOST_API_KEY" not in res.stdout


def test_proc_shows_only_the_sandbox_and_is_read_only(run, bwrap_sb):
    code = (
        "import os\n"
        "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()), os.getpid())\n"
        "for p in (1, 2, 3):\n"
        "    print(open(f'/proc/{p}/cmdline', 'rb').read().split(b'\\0')[:4])\n"
        "print(os.getppid())\n"
        "try:\n"
        "    open('/proc/sys/kernel/hostname', 'w').write('x')\n"
        "except OSError as e:\n"
        "    print('sys', type(e).__name__)\n"
    )
    res = run(bwrap_sb, code)
    lines = res.stdout.splitlines()
    pids, me = lines[0].rsplit(" ", 1)
    # bwrap's init, the fork-server, its template (which forks every call), this call
    assert eval(pids) == [1, 2, 3, int(me)]
    init, server, template = (eval(line) for line in lines[1:4])
    assert b"bwrap" in init[0]
    assert server == template and server[-1].endswith(b"/worker.py")  # a fork of the server
    assert lines[4] == "3" and lines[5].startswith("sys ")


# --- network --------------------------------------------------------------------------------


@pytest.fixture
def loopback_listener():
    """A TCP listener on 127.0.0.1 that records every connection it accepts."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    accepted = []
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                conn, addr = srv.accept()
                accepted.append(addr)
                conn.close()
            except OSError:
                pass

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    yield srv.getsockname()[1], accepted
    stop.set()
    t.join()
    srv.close()


def test_socket_connect_to_host_loopback_is_blocked(run, any_sb, loopback_listener):
    port, accepted = loopback_listener
    code = f"import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('127.0.0.1', {port}))"
    res = run(any_sb, code)
    assert res.status == "error" and "PermissionError" in res.stderr
    assert accepted == []


def test_urllib_cannot_reach_anything(run, any_sb, loopback_listener):
    port, accepted = loopback_listener
    code = f"import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/', timeout=1)"
    res = run(any_sb, code)
    assert res.status == "error"
    assert accepted == []


def test_unix_sockets_are_blocked(run, any_sb):
    res = run(any_sb, "import socket; socket.socket(socket.AF_UNIX)")
    assert res.status == "error" and "PermissionError" in res.stderr


def test_network_namespace_has_only_loopback(run, bwrap_sb):
    res = run(
        bwrap_sb, "print([l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]])"
    )
    assert res.stdout.strip() == "['lo']"


# --- signals, ptrace, namespaces ------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "import os; os.kill(os.getppid(), 9)",
        "import os; os.kill(-1, 9)",
        "import os; os.kill(1, 9)",
        "import os; os.killpg(0, 9)",
    ],
    ids=["parent", "everyone", "pid1", "own-group"],
)
def test_signals_to_other_processes_are_refused(run, any_sb, code):
    res = run(any_sb, code)  # assert_healthy: the fork-server survived
    assert res.status == "error" and "PermissionError" in res.stderr


def test_ptrace_attach_is_refused(run, any_sb):
    code = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.ptrace(16, os.getppid(), 0, 0), ctypes.get_errno())\n"
    )
    res = run(any_sb, code)
    assert res.stdout.split() == ["-1", "1"]  # EPERM


def test_fork_server_memory_is_not_readable(run, any_sb):
    res = run(any_sb, "import os; open(f'/proc/{os.getppid()}/mem', 'rb').read(1)")
    assert res.status == "error" and "PermissionError" in res.stderr


# Looks through every buffer object the call's process inherited from the fork-server (each
# in a child of its own, since a buffer left out of the fork faults when touched).
FIND_IN_INHERITED_BUFFERS = """
import gc, os
secret = TOKEN[::-1].encode()
def buffers():
    seen = set()
    for o in gc.get_objects():
        d = getattr(o, "__dict__", None)
        for v in [o, *(d.values() if isinstance(d, dict) else ()),
                  *(o.values() if isinstance(o, dict) else ())]:
            if isinstance(v, (bytearray, memoryview)) or type(v).__name__ in ("ndarray", "mmap"):
                if id(v) not in seen:
                    seen.add(id(v))
                    yield v
found = 0
for buf in buffers():
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(7 if secret in bytes(memoryview(buf).cast("B")) else 0)
        except BaseException:
            os._exit(0)
    found += os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7
print(found)
"""


@pytest.mark.parametrize("level", ["bwrap", "process"])
def test_a_call_cannot_read_the_previous_calls_inputs_from_inherited_memory(
    sandbox_factory, run, level
):
    sb = sandbox_factory(level, workers=1)
    token = uuid.uuid4().hex
    assert sb.run("pass", files={"in.bin": token.encode() * 512}).ok
    code = FIND_IN_INHERITED_BUFFERS.replace("TOKEN", repr(token[::-1]))
    res = run(sb, code)
    assert res.ok, res.describe()
    assert res.stdout.strip() == "0"


@pytest.mark.parametrize(
    "call",
    ["libc.unshare(0x10000000)", "libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)"],
    ids=["unshare-user", "mount"],
)
def test_namespace_and_mount_calls_are_refused(run, any_sb, call):
    code = f"import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint({call}, ctypes.get_errno())"
    res = run(any_sb, code)
    assert res.stdout.split() == ["-1", "1"]


# --- results crossing the boundary ----------------------------------------------------------


def test_oversized_result_image_is_a_bad_result(run, bwrap_sb):
    code = "import cv2, numpy as np; cv2.imwrite('out.png', np.zeros((3000, 3000, 3), np.uint8))"
    res = run(bwrap_sb, code)
    assert res.status == "bad_result" and "out.png" in res.reason and res.images == {}
    assert "2048" in res.reason  # the max_image_side it exceeds


def test_pickled_object_named_like_an_image_is_never_unpickled(run, bwrap_sb):
    code = "import pickle; open('out.png', 'wb').write(pickle.dumps([object]))"
    res = run(bwrap_sb, code)
    assert res.status == "bad_result" and res.images == {}


@pytest.mark.parametrize(
    "payload",
    [
        'b\'\\x00\\x00\\x00\\x30{"ev":"done","images":[{"shape":[100000,100000,3]}]}\'',
        "bytes(range(256)) * 16",
    ],
    ids=["forged-headers", "garbage"],
)
def test_bytes_written_to_every_fd_cannot_forge_a_result(run, any_sb, payload):
    code = (
        "import os\n"
        f"data = {payload}\n"
        "for fd in range(3, 64):\n"
        "    try:\n"
        "        os.write(fd, data)\n"
        "    except OSError:\n"
        "        pass\n"
        "print('done')\n"
    )
    res = run(any_sb, code)
    assert res.status == "ok" and res.images == {} and res.stdout == "done\n"


def test_decompression_bomb_header_is_refused_before_decoding(run, bwrap_sb):
    code = (
        "import struct, zlib\n"
        "def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))\n"
        "ihdr = struct.pack('>IIBBBBB', 100000, 100000, 8, 2, 0, 0, 0)\n"
        "png = b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(b'\\0' * 1000)) + chunk(b'IEND', b'')\n"
        "open('bomb.png', 'wb').write(png)\n"
    )
    res = run(bwrap_sb, code)
    assert res.status == "bad_result" and "bomb.png" in res.reason


@pytest.mark.parametrize(
    "code,name",
    [
        ("open('empty.png', 'wb').close()", "empty.png"),
        ("open('text.jpg', 'w').write('not an image')", "text.jpg"),
        ("import os; os.symlink('/etc/hostname', 'link.png')", None),
    ],
    ids=["empty-file", "not-an-image", "symlink"],
)
def test_malformed_output_files(run, bwrap_sb, code, name):
    res = run(bwrap_sb, code)
    if name is None:
        assert res.status == "ok" and res.images == {}  # symlinks are never followed
    else:
        assert res.status == "bad_result" and name in res.reason


@pytest.mark.parametrize(
    "writer,expected",
    [
        ("cv2.imwrite('g.png', np.full((4, 5), 7, np.uint8))", [7, 7, 7]),
        (
            "cv2.imwrite('a.png', np.dstack([np.full((4, 5, 3), 9, np.uint8), np.zeros((4, 5), np.uint8)]))",
            [9, 9, 9],
        ),
        ("cv2.imwrite('w.png', np.full((4, 5, 3), 65535, np.uint16))", [255, 255, 255]),
        # An explicit palette: Pillow 12.3 (which openenv-core's gradio pins) writes a 'P' image
        # with no palette as a truncated BMP that neither PIL nor cv2 can read back.
        (
            "from PIL import Image; im = Image.new('P', (5, 4)); im.putpalette([0, 0, 0] * 256)\n"
            "im.save('p.bmp')",
            [0, 0, 0],
        ),
    ],
    ids=["grey", "rgba", "16-bit", "palette"],
)
def test_odd_output_images_become_hxwx3_uint8(run, bwrap_sb, writer, expected):
    res = run(bwrap_sb, "import cv2, numpy as np\n" + writer)
    assert res.status == "ok", res.describe()
    (img,) = res.images.values()
    assert img.shape == (4, 5, 3) and img.dtype == np.uint8
    assert img[0, 0].tolist() == expected


def test_unusual_imports_work_or_fail_cleanly(run, bwrap_sb):
    code = (
        "import importlib\n"
        "for m in ['asyncio', 'sqlite3', 'ssl', 'json', 'decimal', 'tkinter', 'multiprocessing']:\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except Exception as e:\n"
        "        print(m, type(e).__name__)\n"
    )
    assert run(bwrap_sb, code).status == "ok"
