"""The spare: each worker forks the next call's process ahead of time (see ``worker.py``).

Claims tested: every call still runs in a new process (the one forked ahead, never a reused
one); a spare that someone kills is replaced without failing the call; a spare never outlives
its worker, whether the Sandbox is closed or the worker dies; the spare does not change
what RLIMIT_NPROC allows a call; and it faults in its first heap in huge pages where the host
has them, in small pages where not, the code's memory working alike.
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from arft_envs.tools.sandbox import _workers

LEVELS = ["bwrap", "process"]
GETPID = "import os; print(os.getpid())"


def wait_for(predicate, what: str, timeout_s: float = 20.0):
    """Poll until ``predicate()`` is truthy and return it (a liveness wait, not a timing)."""
    end = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def the_spare(sb, spares) -> int:
    """Host pid of the one worker's spare (forked right after the previous answer)."""
    (pid,) = wait_for(lambda: spares(sb), "the worker's spare")
    return pid


def ns_pid(host_pid: int) -> int:
    """``host_pid`` as the process sees itself (its pid in the innermost pid namespace)."""
    with open(f"/proc/{host_pid}/status") as f:
        return int(next(line for line in f if line.startswith("NSpid:")).split()[-1])


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("level", LEVELS)
def test_each_call_runs_in_the_new_process_forked_for_it(sandbox_factory, spares, level):
    sb = sandbox_factory(level, workers=1)
    seen = []
    for _ in range(4):
        spare = the_spare(sb, spares)
        expected = ns_pid(spare)
        res = sb.run(GETPID)
        assert res.ok, res.describe()
        assert int(res.stdout) == expected  # the call ran in the process forked ahead
        assert gone(spare)  # and that process did not survive the call
        seen.append(expected)
    assert len(set(seen)) == len(seen)  # a new process every call


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_spare_is_replaced_without_failing_the_call(
    sandbox_factory, spares, healthy, level, sig
):
    sb = sandbox_factory(level, workers=1)
    servers = sb.worker_pids()
    spare = the_spare(sb, spares)
    killed = ns_pid(spare)
    os.kill(spare, sig)
    wait_for(lambda: gone(spare), "the killed spare to die")
    res = sb.run(GETPID)
    assert res.ok, res.describe()
    assert int(res.stdout) != killed
    assert sb.worker_pids() == servers  # the same worker, not a replacement
    healthy(sb, servers)


@pytest.mark.parametrize("level", LEVELS)
def test_a_stopped_spare_is_replaced_without_failing_the_call(
    sandbox_factory, spares, healthy, level
):
    sb = sandbox_factory(level, workers=1)
    servers = sb.worker_pids()
    spare = the_spare(sb, spares)
    stopped = ns_pid(spare)
    os.kill(spare, signal.SIGSTOP)
    wait_for(lambda: psutil.Process(spare).status() == psutil.STATUS_STOPPED, "the stop")
    res = sb.run(GETPID)
    assert res.ok, res.describe()
    assert int(res.stdout) != stopped and gone(spare)
    healthy(sb, servers)


@pytest.mark.parametrize("level", LEVELS)
def test_closing_the_sandbox_leaves_no_process(sandbox_factory, spares, level):
    sb = sandbox_factory(level, workers=1)
    assert sb.run(GETPID).ok
    spare = the_spare(sb, spares)
    processes = [spare, *sb.worker_pids()]
    sb.close()
    assert [p for p in processes if not gone(p)] == []  # close() returns once they are gone


@pytest.mark.parametrize("level", LEVELS)
def test_a_dead_workers_spare_dies_with_it_and_the_next_call_works(
    sandbox_factory, spares, healthy, level
):
    sb = sandbox_factory(level, workers=1)
    (server,) = sb.worker_pids()
    spare = the_spare(sb, spares)
    os.kill(server, signal.SIGKILL)
    wait_for(lambda: gone(spare), "the dead worker's spare to die")
    res = sb.run(GETPID)
    assert res.ok, res.describe()
    assert sb.worker_pids() != [server]
    healthy(sb)


@pytest.mark.parametrize("level", LEVELS)
def test_the_spare_does_not_change_how_many_tasks_a_call_may_start(sandbox_factory, level):
    """RLIMIT_NPROC = tasks the worker has + ``nproc``: the call itself and nproc - 1 more."""
    if level == "process" and os.geteuid() != 0:
        pytest.skip("a non-root process level shares its uid's task count with this host")
    sb = sandbox_factory(level, workers=1)
    code = (  # processes, not threads: thread stacks would meet the memory limit first
        "import os\n"
        "r, w = os.pipe()\n"
        "n = 0\n"
        "try:\n"
        "    while True:\n"
        "        if os.fork() == 0:\n"
        "            os.close(w)\n"
        "            os.read(r, 1)\n"
        "            os._exit(0)\n"
        "        n += 1\n"
        "except OSError:\n"
        "    pass\n"
        "print(n)\n"
    )
    counts = [sb.run(code).stdout.strip() for _ in range(3)]
    assert counts == [str(sb.limits.nproc - 1)] * 3


def memory_kib(pid: int) -> dict[str, int]:
    """``/proc/<pid>/smaps_rollup`` as {field: KiB}."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        rows = [line.split() for line in f if line.split()[0].endswith(":")]
    return {r[0][:-1]: int(r[1]) for r in rows if len(r) == 3 and r[2] == "kB"}


#: The code checks that fresh memory reads as zeros, then uses more than the spare faulted in.
USES_MEMORY = (
    "import numpy as np\n"
    "a = np.empty(24 << 20, np.uint8)\n"
    "b = bytearray(8 << 20)\n"
    "assert not any(b)\n"
    "a[:] = 7\n"
    "print(int(a.sum()) == 7 * (24 << 20), len(b))\n"
)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("host_has_huge_pages", [True, False])
def test_the_spare_faults_in_its_heap_in_huge_pages_where_the_host_has_them(
    sandbox_factory, spares, monkeypatch, level, host_has_huge_pages
):
    if os.geteuid() != 0:
        pytest.skip("the spare is not dumpable: only root reads its memory map")
    huge = host_has_huge_pages and _workers.huge_pages_enabled()  # what the kernel gives
    monkeypatch.setattr(_workers, "huge_pages_enabled", lambda: host_has_huge_pages)
    sb = sandbox_factory(level, workers=1)
    for _ in range(2):
        spare = the_spare(sb, spares)
        # It faults in 4 MiB while it waits (plus, with huge pages, what lies below them).
        wait_for(lambda s=spare: memory_kib(s)["Private_Dirty"] >= 4096, "the spare's heap")
        if huge:
            wait_for(lambda s=spare: memory_kib(s)["AnonHugePages"] >= 4096, "its huge pages")
        else:
            assert memory_kib(spare)["AnonHugePages"] == 0
        res = sb.run(USES_MEMORY)
        assert res.ok, res.describe()
        assert res.stdout.split() == ["True", str(8 << 20)]
