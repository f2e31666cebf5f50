"""Capped, reusable I/O buffers of the fork-server (worker side). Trusted code."""

from __future__ import annotations

import mmap
import os


def unshared(n: int):  # noqa: ANN201 - a numpy array; numpy is imported lazily here
    """``n`` zeroed bytes (a uint8 array) that ``fork()`` leaves out of every child.

    For the server's reusable I/O buffers. The template (see ``worker.py``) was forked from
    the server before any call and shares its pages copy-on-write; buffers mapped like this
    are never shared, so refilling them never costs a page copy.
    """
    import numpy as np

    m = mmap.mmap(-1, max(n, 1))
    m.madvise(mmap.MADV_DONTFORK)
    return np.frombuffer(m, np.uint8)


class Sink:
    """Keeps the first ``cap`` bytes of a stream and counts the rest.

    Reads straight into a buffer kept across calls (no fresh pages each call); bytes beyond
    the cap go to a scratch buffer and are only counted.
    """

    _overflow = None

    def __init__(self) -> None:
        self.buf = unshared(0)
        self.n = 0
        self.cap = 0
        self.dropped = 0

    def reset(self, cap: int) -> None:
        self.n, self.cap, self.dropped = 0, cap, 0

    def read_from(self, fd: int) -> int:
        if self.n >= self.cap:
            if Sink._overflow is None:
                Sink._overflow = unshared(1 << 16)
            k = os.readv(fd, [Sink._overflow])
            self.dropped += k
            return k
        if len(self.buf) - self.n < 1 << 16:
            grown = unshared(len(self.buf) + min(max(len(self.buf), 1 << 20), self.cap + (1 << 16)))
            grown[: self.n] = self.buf[: self.n]
            self.buf = grown
        k = os.readv(fd, [memoryview(self.buf)[self.n : min(len(self.buf), self.cap)]])
        self.n += k
        return k

    def view(self) -> memoryview:
        return memoryview(self.buf)[: self.n]


def drain(fd: int, buf: Sink) -> None:
    """Read what is left in a pipe without waiting for writers that might not exist."""
    for _ in range(1024):
        try:
            if not buf.read_from(fd):
                return
        except OSError:
            return
