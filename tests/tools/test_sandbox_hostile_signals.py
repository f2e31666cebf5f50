"""Signals reach only the call's own processes, whatever route the kernel offers.

Each hostile program aims signals at the fork-server, at pid 1 and at the host process (the
test's own pid, which a ``process``-level call can name) through a different route: the
kill family as raw syscalls, a file's SIGIO owner (``fcntl`` and ``ioctl``), leases and
dnotify, and a child's exit signal. Judged on the host: the host counts the SIGUSR1 it
receives (none may arrive), and ``hostile`` checks that the fork-servers survived and the
next call is clean. Both levels. The last tests check the Landlock layer on its own, in a
process of the test, without seccomp in front of it.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from arft_envs.tools.sandbox import _landlock

# Raw syscalls through ctypes (numbers for x86_64 and aarch64; the pidfd calls share one
# number everywhere). Each program prints "route target errno" lines, errno 0 = it worked.
SIGNAL_SYSCALLS = r"""
import ctypes, os, signal
libc = ctypes.CDLL(None, use_errno=True)
NR = {"x86_64": dict(kill=62, tkill=200, tgkill=234, rt_sigqueueinfo=129,
                     rt_tgsigqueueinfo=297),
      "aarch64": dict(kill=129, tkill=130, tgkill=131, rt_sigqueueinfo=138,
                      rt_tgsigqueueinfo=240)}[os.uname().machine]
def sys(name, *args):
    r = libc.syscall(NR.get(name, name), *args)
    return 0 if r >= 0 else ctypes.get_errno()
info = (ctypes.c_int * 32)(SIG, 0, -1)  # si_signo, si_errno, si_code=SI_QUEUE
for target in TARGETS:
    print("kill", target, sys("kill", target, SIG))
    print("kill-group", target, sys("kill", -target, SIG))
    print("tkill", target, sys("tkill", target, SIG))
    print("tgkill", target, sys("tgkill", target, target, SIG))
    print("rt_sigqueueinfo", target, sys("rt_sigqueueinfo", target, SIG, info))
    print("rt_tgsigqueueinfo", target, sys("rt_tgsigqueueinfo", target, target, SIG, info))
    print("pidfd_open", target, sys(434, target, 0))
    print("pidfd_send_signal", target, sys(424, 0, SIG, None, 0))
"""

# A file's SIGIO owner: the kernel signals the owner whenever the file becomes ready.
FILE_OWNER = r"""
import ctypes, fcntl, os, struct, time
libc = ctypes.CDLL(None, use_errno=True)
F_SETSIG, F_SETOWN_EX, F_SETLEASE, F_NOTIFY = 10, 15, 1024, 1026
FIOSETOWN, SIOCSPGRP, FIOASYNC = 0x8901, 0x8902, 0x5452
def err(f, *a):
    try:
        f(*a)
        return 0
    except OSError as e:
        return e.errno
def ioctl(fd, req, value):
    v = ctypes.c_int(value)
    return 0 if libc.ioctl(fd, req, ctypes.byref(v)) == 0 else ctypes.get_errno()
for target in TARGETS:
    for owner in (target, -target):
        r, w = os.pipe()
        print("F_SETOWN", owner, err(fcntl.fcntl, r, fcntl.F_SETOWN, owner))
        ex = struct.pack("ii", 1 if owner > 0 else 2, abs(owner))  # F_OWNER_PID / _PGRP
        print("F_SETOWN_EX", owner, err(fcntl.fcntl, r, F_SETOWN_EX, ex))
        print("FIOSETOWN", owner, ioctl(r, FIOSETOWN, owner))
        print("SIOCSPGRP", owner, ioctl(r, SIOCSPGRP, owner))
        print("F_SETSIG", owner, err(fcntl.fcntl, r, F_SETSIG, SIG))
        print("FIOASYNC", owner, ioctl(r, FIOASYNC, 1))
        fl = fcntl.fcntl(r, fcntl.F_GETFL)
        fcntl.fcntl(r, fcntl.F_SETFL, fl | os.O_ASYNC)
        os.write(w, b"x")  # the read end is ready: SIGIO (or SIG) to its owner, if any
        os.close(r); os.close(w)
open("leased", "w").close()
fd = os.open("leased", os.O_RDONLY)
print("F_SETLEASE", 0, err(fcntl.fcntl, fd, F_SETLEASE, fcntl.F_RDLCK))
d = os.open(".", os.O_RDONLY)
print("F_NOTIFY", 0, err(fcntl.fcntl, d, F_NOTIFY, 0x2 | 0x80000000))  # DN_MODIFY|MULTISHOT
time.sleep(0.2)
"""

# A child whose exit signal is SIG, made a sibling of the call (CLONE_PARENT): if the kernel
# kept the exit signal, the fork-server would receive it when the child exits.
EXIT_SIGNAL = r"""
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
NR_CLONE = {"x86_64": 56, "aarch64": 220}[os.uname().machine]
CLONE_PARENT = 0x00008000
pid = libc.syscall(NR_CLONE, CLONE_PARENT | SIG, 0, 0, 0, 0)
if pid == 0:
    os._exit(0)
print("clone", pid > 0, ctypes.get_errno() if pid < 0 else 0)
pid = libc.syscall(NR_CLONE, SIG, 0, 0, 0, 0)  # an ordinary child with that exit signal
if pid == 0:
    time.sleep(0.3)  # outlives its parent: reparented to the fork-server
    os._exit(0)
print("orphan", pid > 0)
"""


@pytest.fixture
def sigusr1_counter():
    """Counts SIGUSR1 delivered to this (host) process while the test runs."""
    got = []
    old = signal.signal(signal.SIGUSR1, lambda *a: got.append(1))
    yield got
    signal.signal(signal.SIGUSR1, old)


def _program(template: str, targets: list[int], sig: int) -> str:
    return f"TARGETS = {targets!r}\nSIG = {int(sig)}\n" + template


def _routes(stdout: str) -> list[tuple[str, int, int]]:
    return [
        (name, int(target), int(code))
        for name, target, code in (line.split() for line in stdout.splitlines())
    ]


def _targets(sb) -> list[int]:
    """The fork-server and pid 1 as the call names them, and the host's own pid."""
    server_inside = 2 if sb.level == "bwrap" else sb.worker_pids()[0]
    return [server_inside, 1, os.getpid()]


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGKILL], ids=["usr1", "kill"])
def test_every_signal_syscall_aimed_outside_the_call_is_refused(
    hostile, any_sb, sigusr1_counter, sig
):
    res = hostile(any_sb, _program(SIGNAL_SYSCALLS, _targets(any_sb), sig))
    assert res.status == "ok", res.describe()
    routes = _routes(res.stdout)
    assert len(routes) == 8 * 3
    assert [r for r in routes if r[2] != 1] == []  # every route: EPERM from the filter
    assert sigusr1_counter == []


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGKILL], ids=["usr1", "kill"])
def test_a_files_signal_owner_cannot_be_set(hostile, any_sb, sigusr1_counter, sig):
    res = hostile(any_sb, _program(FILE_OWNER, _targets(any_sb), sig))
    assert res.status == "ok", res.describe()
    routes = _routes(res.stdout)
    assert {name for name, _, _ in routes} == {
        "F_SETOWN",
        "F_SETOWN_EX",
        "FIOSETOWN",
        "SIOCSPGRP",
        "F_SETSIG",
        "FIOASYNC",
        "F_SETLEASE",
        "F_NOTIFY",
    }
    assert [r for r in routes if r[2] != 1] == []
    time.sleep(0.1)  # a SIGIO in flight would have been handled by now
    assert sigusr1_counter == []


def test_a_childs_exit_signal_does_not_reach_the_fork_server(hostile, any_sb):
    # SIGKILL as the exit signal: the fork-server would die of it (hostile checks it lives).
    res = hostile(any_sb, _program(EXIT_SIGNAL, [], signal.SIGKILL), timeout_s=3)
    assert res.status == "ok", res.describe()
    assert "clone True 0" in res.stdout and "orphan True" in res.stdout
    time.sleep(0.5)  # the orphan has exited and been reaped by the fork-server
    assert any_sb.run("print('after')").stdout.strip() == "after"


def test_a_grandchild_cannot_signal_outside_the_call_either(hostile, any_sb, sigusr1_counter):
    targets = _targets(any_sb)
    code = (
        "import os, sys\n"
        "if os.fork() == 0:\n"
        "    if os.fork() == 0:\n"
        "        exec(compile(PROGRAM, 'p', 'exec'))\n"
        "        sys.stdout.flush()\n"
        "        os._exit(0)\n"
        "    os.wait(); os._exit(0)\n"
        "os.wait()\n"
    )
    program = _program(SIGNAL_SYSCALLS, targets, signal.SIGUSR1)
    res = hostile(any_sb, f"PROGRAM = {program!r}\n" + code)
    routes = _routes(res.stdout)
    assert len(routes) == 8 * 3 and [r for r in routes if r[2] != 1] == []
    assert sigusr1_counter == []


# --- the Landlock layer alone -------------------------------------------------------------


def _drop_capabilities() -> None:
    """Keep the uid but drop every capability, as a sandboxed call has none: root's
    CAP_SYS_PTRACE would otherwise pass the checks this file is about."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: all empty
    if libc.syscall(126 if os.uname().machine == "x86_64" else 91, header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def _in_confined_child(body, readable=None) -> int:
    """Fork; the child drops its capabilities, enters a Landlock domain (no seccomp), runs
    ``body(parent_pid)`` and exits with its return value, which is returned here."""
    abi = _landlock.abi_version()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 99
        try:
            _drop_capabilities()
            _landlock.confine([], ["/dev/null"], abi, readable)
            code = body(parent)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _need_landlock(abi: int, what: str) -> None:
    """Skip on a developer's older kernel; fail in CI, whose kernel has Landlock ABI >= 6."""
    have = _landlock.abi_version()
    if have < abi:
        msg = f"{what} needs Landlock ABI {abi}; this kernel offers {have}"
        if os.environ.get("CI"):
            pytest.fail(msg + " (CI must run on a kernel with it)")
        pytest.skip(msg)


def test_landlock_scope_stops_signals_out_of_the_domain_by_any_route(sigusr1_counter):
    _need_landlock(6, "the signal scope")

    def body(parent: int) -> int:
        import fcntl

        failures = 0
        try:
            os.kill(parent, signal.SIGUSR1)
            failures += 1
        except PermissionError:
            pass
        r, w = os.pipe()
        fcntl.fcntl(r, fcntl.F_SETOWN, parent)  # no seccomp here: the owner is set
        fcntl.fcntl(r, 10, signal.SIGUSR1)  # F_SETSIG
        fcntl.fcntl(r, fcntl.F_SETFL, fcntl.fcntl(r, fcntl.F_GETFL) | os.O_ASYNC)
        os.write(w, b"x")
        os.kill(os.getpid(), 0)  # its own domain: allowed
        return failures

    assert _in_confined_child(body) == 0
    time.sleep(0.1)
    assert sigusr1_counter == []


def test_landlock_domain_stops_ptrace_access_to_processes_outside_it():
    _need_landlock(1, "a Landlock domain")
    # The target: a process of the same uid without capabilities, like bwrap's pid 1 seen
    # from a call (when root, the test process itself would be shielded by its capabilities).
    r, w = os.pipe()
    target = os.fork()
    if target == 0:  # pragma: no cover - runs in the child
        try:
            _drop_capabilities()
            os.write(w, b"x")
            time.sleep(30)
        finally:
            os._exit(0)
    try:
        os.read(r, 1)

        def body(_parent: int) -> int:
            for name in ("mem", "environ"):
                try:
                    open(f"/proc/{target}/{name}", "rb").read(1)
                    return 1
                except PermissionError:
                    pass
            return 0

        assert _in_confined_child(body) == 0
    finally:
        os.kill(target, signal.SIGKILL)
        os.waitpid(target, 0)
        os.close(r)
        os.close(w)
