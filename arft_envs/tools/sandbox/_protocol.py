"""Wire format between the host and a sandbox worker, shared by both sides.

This module is imported twice: by the host as ``arft_envs.tools.sandbox._protocol`` and, inside
the sandbox, by ``worker.py`` as the top-level module ``_protocol``. It therefore uses only the
standard library and no relative imports.

A message is a *frame*: a 4-byte big-endian length, then that many bytes of UTF-8 JSON (a dict).
Raw payloads (code, file bytes, stdout, image pixels) follow a frame; their sizes are announced
in the frame, so the reader never guesses and never unpickles anything.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import struct
import time

#: The largest frame a reader accepts; anything bigger means a corrupt or hostile stream.
MAX_FRAME_BYTES = 1 << 20

#: File name suffixes treated as images: written inputs may use them, and every such file the
#: code leaves in its work dir is decoded and returned.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

#: The most image files returned from one call.
MAX_IMAGES = 32

#: The most input files sent with one call.
MAX_INPUT_FILES = 64

_LEN = struct.Struct(">I")


class ProtocolError(Exception):
    """The byte stream does not follow the protocol (corrupt, truncated or hostile)."""


def pack_frame(obj: dict) -> bytes:
    """Encode ``obj`` as one length-prefixed JSON frame."""
    body = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if len(body) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds {MAX_FRAME_BYTES}")
    return _LEN.pack(len(body)) + body


def frame_length(prefix: bytes) -> int:
    """Return the body length announced by a 4-byte ``prefix``, checked against the cap."""
    (n,) = _LEN.unpack(prefix)
    if n > MAX_FRAME_BYTES:
        raise ProtocolError(f"announced frame of {n} bytes exceeds {MAX_FRAME_BYTES}")
    return n


def parse_frame(body: bytes) -> dict:
    """Decode a frame body; anything but a JSON object is a protocol error."""
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"frame is not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("frame is not a JSON object")
    return obj


def check_file_name(name: object) -> str:
    """Return ``name`` if it is a safe plain file name for the work dir, else raise ValueError.

    A safe name has no directory part, is not ``.``/``..``, holds only printable characters and
    encodes to at most 255 UTF-8 bytes, so it cannot point outside the per-call work dir.
    """
    if not isinstance(name, str):
        raise ValueError(f"file name must be a str, got {type(name).__name__}")
    if name in ("", ".", "..") or "/" in name or "\\" in name or not name.isprintable():
        raise ValueError(
            f"file name {name!r} is not a plain file name (no '/', no control characters)"
        )
    try:
        n = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"file name {name!r} is not valid UTF-8") from None
    if n > 255:
        raise ValueError(f"file name is {n} bytes long; the limit is 255")
    return name


def is_image_name(name: str) -> bool:
    """True when ``name`` ends with one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


# --- blocking helpers, used inside the worker (the host has its own deadline-aware channel) ---


def read_exact(fd: int, n: int) -> bytes:
    """Read exactly ``n`` bytes from a blocking fd; raise EOFError if it closes first."""
    chunks = []
    while n:
        b = os.read(fd, min(n, 1 << 20))
        if not b:
            raise EOFError("stream closed")
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def read_into(fd: int, buf: memoryview) -> None:
    """Fill ``buf`` from a blocking fd; raise EOFError if it closes first."""
    buf = buf.cast("B")
    while buf:
        n = os.readv(fd, [buf])
        if not n:
            raise EOFError("stream closed")
        buf = buf[n:]


def read_frame(fd: int) -> dict:
    """Read one frame from a blocking fd."""
    return parse_frame(read_exact(fd, frame_length(read_exact(fd, 4))))


def write_all(fd: int, *parts: bytes | bytearray | memoryview) -> None:
    """Write every part to a blocking fd."""
    for part in parts:
        mv = memoryview(part).cast("B")
        while mv:
            mv = mv[os.write(fd, mv) :]


# --- deadline-aware helpers over non-blocking fds (host channel, worker's decoder pipe) ---


def _wait(fd: int, events: int, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("deadline passed")
    p = select.poll()
    p.register(fd, events)
    p.poll(max(1, int(remaining * 1000)))


def recv_into(fd: int, buf: memoryview, deadline: float) -> None:
    """Fill ``buf`` from non-blocking ``fd`` before ``deadline`` (time.monotonic()).

    Raises EOFError if the stream closes first and TimeoutError if the deadline passes.
    """
    buf = buf.cast("B")
    while buf:
        try:
            n = os.readv(fd, [buf])
        except BlockingIOError:
            _wait(fd, select.POLLIN, deadline)
            continue
        if n == 0:
            raise EOFError("stream closed")
        buf = buf[n:]


def recv_exact(fd: int, n: int, deadline: float) -> bytearray:
    """Read exactly ``n`` bytes from non-blocking ``fd`` before ``deadline``."""
    out = bytearray(n)
    recv_into(fd, memoryview(out), deadline)
    return out


def recv_frame(fd: int, deadline: float) -> dict:
    """Read one frame from non-blocking ``fd`` before ``deadline``."""
    n = frame_length(bytes(recv_exact(fd, 4, deadline)))
    return parse_frame(bytes(recv_exact(fd, n, deadline)))


def send_all(fd: int, parts: list, deadline: float) -> None:
    """Write every part to non-blocking ``fd`` before ``deadline``.

    Raises BrokenPipeError if the reader is gone and TimeoutError if the deadline passes.
    """
    for part in parts:
        mv = memoryview(part).cast("B")
        while mv:
            try:
                mv = mv[os.write(fd, mv) :]
            except BlockingIOError:
                _wait(fd, select.POLLOUT, deadline)


def grow_pipe(fd: int) -> None:
    """Give a pipe a 1 MiB buffer where allowed, so a 512x512 image crosses in one write
    instead of sixteen 64 KiB round trips between the two processes."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
    except (OSError, AttributeError):  # not Linux, or over /proc/sys/fs/pipe-max-size
        pass
