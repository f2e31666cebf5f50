"""How the fork-server classifies a call's end (``worker.classify_exit``), case by case.

A pure function of the wait status, the CPU used, the CPU limit, the timeout flag and the
bytes the call's process wrote to its report pipe (which the code can write to as well), so
every case is one row here; the hostile tests check the same outcomes end to end.
"""

from __future__ import annotations

import signal
import sys

import pytest


@pytest.fixture(scope="module")
def classify_exit():
    saved = list(sys.path)  # worker.py puts its own folder first, for its launch inside bwrap
    try:
        from arft_envs.tools.sandbox import worker
    finally:
        sys.path[:] = saved
    return worker.classify_exit


def exited(code: int) -> int:
    return code << 8


def killed_by(sig: int) -> int:
    return int(sig)


CASES = [
    # wstatus, timed_out, cpu_used, cpu_s, report -> (status, exit_code, signal, limit)
    (exited(0), False, 0.1, 5, b"C", ("ok", 0, None, None)),
    (exited(0), True, 0.1, 5, b"C", ("timeout", None, None, "wall")),
    (killed_by(signal.SIGKILL), True, 9.0, 5, b"C", ("timeout", None, None, "wall")),
    (exited(3), False, 0.1, 5, b"C", ("error", 3, None, None)),
    (exited(1), False, 0.1, 5, b"Cmemory\n", ("killed", 1, None, "memory")),
    (exited(1), False, 0.1, 5, b"Cnproc\n", ("killed", 1, None, "nproc")),
    (exited(1), False, 0.1, 5, b"Cdisk\nmemory\n", ("killed", 1, None, "disk")),  # first line
    (exited(1), False, 0.1, 5, b"Cmemoryx\n", ("error", 1, None, None)),  # not a known tag
    (exited(1), False, 0.1, 5, b"Cmemory", ("error", 1, None, None)),  # no line end
    (exited(1), False, 0.1, 5, b"CC\nmemory\n", ("error", 1, None, None)),
    (exited(0), False, 0.1, 5, b"Cmemory\n", ("ok", 0, None, None)),  # exit 0 is success
    (exited(0), False, 0.1, 5, b"", ("killed", 0, None, "setup")),  # never confined
    (exited(121), False, 0.0, 5, b"", ("killed", 121, None, "setup")),
    (exited(1), False, 0.1, 5, b"memory\n", ("killed", 1, None, "setup")),  # a forged tag
    (killed_by(signal.SIGXCPU), False, 5.0, 5, b"C", ("killed", None, 24, "cpu")),
    (killed_by(signal.SIGKILL), False, 4.96, 5, b"C", ("killed", None, 9, "cpu")),
    (killed_by(signal.SIGKILL), False, 4.9, 5, b"C", ("signal", None, 9, None)),
    (killed_by(signal.SIGKILL), False, 1.96, 1.5, b"C", ("killed", None, 9, "cpu")),  # ceil
    (killed_by(signal.SIGXFSZ), False, 0.1, 5, b"C", ("killed", None, 25, "fsize")),
    (killed_by(signal.SIGSEGV), False, 0.1, 5, b"C", ("signal", None, 11, None)),
    (killed_by(signal.SIGSEGV) | 0x80, False, 0.1, 5, b"C", ("signal", None, 11, None)),
    (killed_by(signal.SIGKILL), False, 0.0, 5, b"", ("signal", None, 9, None)),
]


@pytest.mark.parametrize(("wstatus", "timed_out", "cpu_used", "cpu_s", "report", "expected"), CASES)
def test_classify_exit(classify_exit, wstatus, timed_out, cpu_used, cpu_s, report, expected):
    got = classify_exit(
        wstatus, timed_out=timed_out, cpu_used=cpu_used, cpu_s=cpu_s, report=memoryview(report)
    )
    assert got == expected
