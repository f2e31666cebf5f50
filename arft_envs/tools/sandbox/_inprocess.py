"""The ``none`` level: the reference paper's bare in-process ``exec``. No isolation at all.

Kept only to reproduce the paper. The code runs in the caller's process with the caller's
files, network, environment and memory; ``os._exit`` or a segfault ends the caller. Calls are
serialised (the work dir is entered with a process-wide ``chdir``), stdout/stderr are captured
at the ``sys.stdout`` level (not the fd level), and the time limit works only in the main thread
(SIGALRM).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import tempfile
import threading
import time
import traceback

from . import _imageio, _protocol
from .limits import SandboxLimits
from .result import ExecResult, truncation_marker

_lock = threading.Lock()


class _CappedText(io.TextIOBase):
    """A text sink that keeps the first ``cap`` characters and counts the bytes it drops."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.parts: list[str] = []
        self.kept = 0
        self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        room = self.cap - self.kept
        if room > 0:
            self.parts.append(s[:room])
            self.kept += min(room, len(s))
        if len(s) > max(room, 0):
            self.dropped += len(s[max(room, 0) :].encode("utf-8", "backslashreplace"))
        return len(s)

    def text(self) -> str:
        s = "".join(self.parts)
        return s + truncation_marker(self.dropped) if self.dropped else s


class _Alarm(BaseException):
    pass


def run_in_process(
    code: str, files: dict[str, bytes], limits: SandboxLimits, wall_s: float
) -> ExecResult:
    """Exec ``code`` in this process in a temporary work dir; see the module docstring."""
    t0 = time.perf_counter()
    with _lock:
        job = tempfile.mkdtemp(prefix="arft-none-")
        old_cwd = os.getcwd()
        out, err = _CappedText(limits.stdout_bytes), _CappedText(limits.stdout_bytes)
        written = {}
        status, exit_code, reason = "ok", 0, ""
        use_alarm = threading.current_thread() is threading.main_thread()
        old_handler = None
        try:
            for name, data in files.items():
                path = os.path.join(job, name)
                with open(path, "wb") as fh:
                    fh.write(data)
                st = os.stat(path)
                written[name] = (st.st_ino, st.st_size, st.st_mtime_ns)
            os.chdir(job)
            if use_alarm:

                def on_alarm(signum, frame):  # noqa: ANN001
                    raise _Alarm()

                old_handler = signal.signal(signal.SIGALRM, on_alarm)
                signal.setitimer(signal.ITIMER_REAL, wall_s)
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    try:
                        exec(compile(code, "<code>", "exec"), {"__name__": "__main__"})
                    except SystemExit as e:
                        if e.code is None:
                            exit_code = 0
                        elif isinstance(e.code, int):
                            exit_code = e.code & 0xFF
                        else:
                            print(e.code, file=err)
                            exit_code = 1
                        status = "ok" if exit_code == 0 else "error"
                    except (_Alarm, KeyboardInterrupt):
                        raise
                    except BaseException as e:
                        tb = e.__traceback__.tb_next if e.__traceback__ else None
                        traceback.print_exception(type(e), e, tb, file=err)
                        status, exit_code = "error", 1
            except _Alarm:
                status, exit_code, reason = (
                    "timeout",
                    None,
                    f"wall-clock limit of {wall_s:g} s exceeded",
                )
            finally:
                if use_alarm:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    signal.signal(signal.SIGALRM, old_handler)
            images, errors = {}, []
            for name in sorted(os.listdir(job)):
                path = os.path.join(job, name)
                if not _protocol.is_image_name(name) or not os.path.isfile(path):
                    continue
                st = os.stat(path)
                if written.get(name) == (st.st_ino, st.st_size, st.st_mtime_ns):
                    continue
                try:
                    images[name] = _imageio.decode_image_file(path, limits.max_image_side)
                except ValueError as e:
                    errors.append(f"image {name!r} was not returned: {e}")
            if errors:
                reason = "; ".join(filter(None, [reason, *errors]))
                if status == "ok":
                    status = "bad_result"
        finally:
            os.chdir(old_cwd)
            shutil.rmtree(job, ignore_errors=True)
    return ExecResult(
        status=status,
        exit_code=exit_code,
        stdout=out.text(),
        stderr=err.text(),
        stdout_truncated=out.dropped > 0,
        stderr_truncated=err.dropped > 0,
        images=images,
        duration_s=time.perf_counter() - t0,
        reason=reason,
    )
