"""Whole-call deadlines for tool calls, whatever the tool does inside.

A backend's own timeouts bound what the backend thinks of (a socket read, the sandbox's wall
clock), not the call: a server that trickles its answer byte by byte, or a user's backend that
blocks on a lock, can hold a turn for ever. :class:`DeadlineRunner` runs each call on a worker
thread and waits for it at most ``deadline_s`` seconds; a missed deadline raises
:class:`DeadlineExceeded` in the caller, which the env turns into a tool message.

A thread cannot be killed, so a call that misses its deadline is **abandoned**: its worker
thread (a daemon) is left to finish the call, its result is dropped, and the thread ends as
soon as the call returns. The next call gets a fresh worker. At most ``max_abandoned``
abandoned calls may still be running; while that many are, new calls are refused at once with
:class:`DeadlineBusy` instead of starting more threads, so a backend that hangs for ever costs
a bounded number of threads, never one per turn. Daemon threads never block interpreter exit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: How many abandoned calls of one runner may run at once before new calls are refused.
DEFAULT_MAX_ABANDONED = 4


class DeadlineExceeded(TimeoutError):
    """The call did not finish within its deadline; it was abandoned (see module docstring)."""

    def __init__(self, deadline_s: float):
        super().__init__(f"the call did not finish within {deadline_s:g} s")
        self.deadline_s = deadline_s


class DeadlineBusy(DeadlineExceeded):
    """Too many earlier calls are still running past their deadlines; this one was not started."""

    def __init__(self, deadline_s: float, running: int):
        TimeoutError.__init__(
            self,
            f"{running} earlier call(s) are still running past their {deadline_s:g} s "
            "deadline, so this call was not started",
        )
        self.deadline_s = deadline_s
        self.running = running


class _Job:
    __slots__ = ("fn", "done", "value", "error")

    def __init__(self, fn: Callable[[], Any]):
        self.fn = fn
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class _Worker:
    """One daemon thread running jobs in order until it is told to stop or is abandoned."""

    def __init__(self, name: str):
        self._jobs: list[_Job | None] = []
        self._ready = threading.Condition()
        self.abandoned = False  # set once its call missed the deadline; a stop job follows
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def submit(self, job: _Job | None) -> None:
        with self._ready:
            self._jobs.append(job)
            self._ready.notify()

    def _loop(self) -> None:
        while True:
            with self._ready:
                while not self._jobs:
                    self._ready.wait()
                job = self._jobs.pop(0)
            if job is None:
                return
            try:
                job.value = job.fn()
            except BaseException as err:  # handed to the caller, never lost in the thread
                job.error = err
            finally:
                job.fn = None  # drop the closure (and what it holds) as soon as it has run
                job.done.set()


class DeadlineRunner:
    """Run callables under a whole-call deadline on a reused daemon worker thread.

    ``call(fn, None)`` runs ``fn`` in the calling thread (no deadline). Not meant to be shared
    by threads: one runner serves one env's tool.
    """

    def __init__(self, max_abandoned: int = DEFAULT_MAX_ABANDONED, name: str = "arft-tool"):
        if max_abandoned < 1:
            raise ValueError(f"max_abandoned must be >= 1, got {max_abandoned}")
        self.max_abandoned = int(max_abandoned)
        self.name = name
        self._worker: _Worker | None = None
        self._abandoned: list[_Worker] = []

    @property
    def abandoned(self) -> int:
        """How many abandoned calls are still running."""
        self._abandoned = [w for w in self._abandoned if w.thread.is_alive()]
        return len(self._abandoned)

    def call(self, fn: Callable[[], T], deadline_s: float | None) -> T:
        """``fn()``'s value (or its exception), or :class:`DeadlineExceeded` after
        ``deadline_s`` seconds."""
        if deadline_s is None:
            return fn()
        running = self.abandoned
        if running >= self.max_abandoned:
            raise DeadlineBusy(deadline_s, running)
        if self._worker is None:
            self._worker = _Worker(self.name)
        job = _Job(fn)
        self._worker.submit(job)
        if not job.done.wait(max(float(deadline_s), 0.0)):
            self._worker.abandoned = True
            self._worker.submit(None)  # it exits as soon as the call returns
            self._abandoned.append(self._worker)
            self._worker = None
            raise DeadlineExceeded(deadline_s)
        if job.error is not None:
            error, job.error = job.error, None
            raise error
        return job.value

    def close(self) -> None:
        """Stop the idle worker (abandoned calls finish on their own, as daemons)."""
        if self._worker is not None:
            self._worker.submit(None)
            self._worker = None
