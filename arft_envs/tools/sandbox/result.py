"""What one sandboxed call returns, and how a model reads it."""

from __future__ import annotations

import signal as _signal
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Status = Literal["ok", "error", "timeout", "killed", "signal", "bad_result"]

#: Every value :attr:`ExecResult.status` can take.
STATUSES: tuple[str, ...] = ("ok", "error", "timeout", "killed", "signal", "bad_result")


@dataclass(frozen=True)
class ExecResult:
    """The outcome of :meth:`Sandbox.run`.

    ``status`` is one of:

    * ``ok``: the code finished with exit code 0.
    * ``error``: an uncaught exception (traceback in ``stderr``) or a non-zero exit code.
    * ``timeout``: the wall-clock limit passed; the call's processes were killed.
    * ``killed``: a resource limit stopped the code (CPU time, memory, file size, open files,
      processes, work-dir space); ``reason`` says which.
    * ``signal``: the process died from a signal (``signal``), e.g. a segfault.
    * ``bad_result``: the code ran, but what it left behind was malformed or too large (an
      image that cannot be decoded or exceeds the size caps); ``reason`` says what.
    """

    status: Status
    exit_code: int | None = None
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    images: dict[str, np.ndarray] = field(default_factory=dict)
    """Image files the code wrote in its work dir, decoded to HxWx3 uint8 RGB, by file name."""
    duration_s: float = 0.0
    """Wall time of the whole call as seen by the caller."""
    reason: str = ""
    """Why the call did not simply succeed (limit hit, image problems); empty when ``ok``."""

    @property
    def ok(self) -> bool:
        """True when the code finished normally and its outputs were valid."""
        return self.status == "ok"

    def describe(self, max_chars: int = 4000) -> str:
        """Render the result as the short text a model reads in its tool message.

        A status line, then stdout, stderr (the traceback) and the image files written, each
        section only when non-empty; stdout and stderr are each cut to ``max_chars``.
        """
        parts = [self._status_line()]
        for title, text in (("stdout", self.stdout), ("stderr", self.stderr)):
            if text.strip():
                if len(text) > max_chars:
                    text = text[:max_chars] + f"…[cut {len(text) - max_chars} characters]"
                parts.append(f"[{title}]\n{text.rstrip()}")
        if self.images:
            names = ", ".join(
                f"{name} ({a.shape[1]}x{a.shape[0]})" for name, a in sorted(self.images.items())
            )
            parts.append(f"[image files written] {names}")
        return "\n".join(parts)

    def _status_line(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        if self.status == "ok":
            return "Execution succeeded."
        if self.status == "error":
            if self.exit_code not in (None, 1) or not self.stderr.strip():
                return f"Execution failed with exit code {self.exit_code}{why}."
            return f"Execution failed with an error{why}."
        if self.status == "timeout":
            return f"Execution timed out{why}."
        if self.status == "killed":
            return f"Execution was stopped{why}."
        if self.status == "signal":
            return f"Execution crashed with signal {signal_name(self.signal)}{why}."
        return f"Execution produced an invalid result{why}."


def signal_name(sig: int | None) -> str:
    """``signal_name(11)`` -> ``'SIGSEGV (11)'``."""
    if sig is None:
        return "?"
    try:
        return f"{_signal.Signals(sig).name} ({sig})"
    except ValueError:
        return str(sig)


def truncation_marker(n: int) -> str:
    """The marker appended to stdout/stderr when ``n`` bytes were dropped."""
    return f"\n…[truncated {n} bytes]"
