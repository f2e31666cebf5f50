"""Resource limits for one sandboxed call."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

_GiB = 1 << 30
_MiB = 1 << 20
_KiB = 1 << 10


@dataclass(frozen=True)
class SandboxLimits:
    """Per-call limits. The defaults suit MAT-Coding's OpenCV/PIL snippets on images up to
    a few megapixels; tests use smaller ones for speed."""

    cpu_s: float = 5.0
    """CPU seconds (RLIMIT_CPU, rounded up to whole seconds): SIGXCPU at the limit, SIGKILL one
    second later. Per process: code that forks gets this budget per child, bounded by wall_s."""

    wall_s: float = 10.0
    """Wall-clock seconds before the call is killed with status ``timeout``. ``run(timeout_s=)``
    overrides it for one call."""

    memory_bytes: int = 2 * _GiB
    """Address space per process (RLIMIT_AS). The worker's imports already map ~0.5 GiB of it."""

    fsize_bytes: int = 32 * _MiB
    """Largest file the code may write (RLIMIT_FSIZE)."""

    nofile: int = 64
    """Open file descriptors per process (RLIMIT_NOFILE)."""

    nproc: int = 16
    """Processes plus threads the call may run at once (RLIMIT_NPROC, counted above the
    worker's own tasks)."""

    stdout_bytes: int = 64 * _KiB
    """Bytes of stdout kept, and separately of stderr; the rest is counted and dropped."""

    tmpfs_bytes: int = 256 * _MiB
    """Size of the writable /tmp (holding the work dir) of a ``bwrap`` worker."""

    max_image_side: int = 8192
    """Largest width or height of an input image or a returned image, in pixels."""

    max_code_bytes: int = 1 * _MiB
    """Largest code string (UTF-8 bytes); longer code is refused without running it."""

    max_result_bytes: int = 64 * _MiB
    """Cap on the bytes crossing the boundary in each direction: decoded output images on the
    way back, input files on the way in."""

    def __post_init__(self) -> None:
        def positive(name: str, minimum: float, unit: str = "") -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"SandboxLimits.{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < minimum:
                raise ValueError(
                    f"SandboxLimits.{name}={value!r} is too small or not finite; "
                    f"use at least {minimum}{unit}"
                )

        positive("cpu_s", 0.001, " s")
        positive("wall_s", 0.001, " s")
        positive("memory_bytes", 512 * _MiB, " bytes (the worker already maps ~0.5 GiB)")
        positive("fsize_bytes", 1, " byte")
        positive("nofile", 16, " (Python needs a few descriptors to start work)")
        positive("nproc", 1)
        positive("stdout_bytes", 1, " byte")
        positive("tmpfs_bytes", 1 * _MiB, " bytes")
        positive("max_image_side", 1, " pixel")
        positive("max_code_bytes", 1, " byte")
        positive("max_result_bytes", 1, " byte")
        for name in (
            "memory_bytes",
            "fsize_bytes",
            "nofile",
            "nproc",
            "stdout_bytes",
            "tmpfs_bytes",
            "max_image_side",
            "max_code_bytes",
            "max_result_bytes",
        ):
            if not isinstance(getattr(self, name), int):
                raise TypeError(f"SandboxLimits.{name} must be an int")

    def to_wire(self) -> dict:
        """The limits as the JSON dict the worker reads (every field is a number, so a
        shallow dict; ``asdict``'s deep copy cost more than the rest of a call's host side)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def format_bytes(n: int) -> str:
    """``format_bytes(2**31)`` -> ``'2 GiB'``: compact sizes for messages."""
    for unit, size in (("GiB", _GiB), ("MiB", _MiB), ("KiB", _KiB)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"
