"""Host side of the workers: start a fork-server, talk to it, replace it, pool several.

This module never trusts a byte that comes back from a worker: frames are size-capped JSON,
payload sizes are checked against the limits before reading, images are raw uint8 arrays whose
shape is validated, and nothing is unpickled. A worker that hangs, dies or sends anything
malformed is killed and replaced.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from . import _bwrap, _cleanup, _protocol
from .errors import SandboxError
from .limits import SandboxLimits, format_bytes
from .result import STATUSES, ExecResult, truncation_marker

logger = logging.getLogger(__name__)

_PACKAGE_DIR = str(Path(__file__).resolve().parent)
_START_TIMEOUT_S = 60.0  # importing numpy/cv2/PIL on a cold, loaded CI machine
_ACK_TIMEOUT_S = 5.0  # request sent and "started" received: ~1 ms for a healthy worker
_SLACK_S = 10.0  # host watchdog margin beyond the worker's own deadlines
#: Process-level workers started by root each run as a random uid from this range, which
#: normal systems leave unallocated (system users < 1000, people and subuid ranges << 2e9).
_PRIVATE_UID_BASE = 2_000_000_000
_PRIVATE_UID_SPAN = 100_000_000
_LIMIT_NAMES = ("wall", "cpu", "memory", "fsize", "disk", "nofile", "nproc", "setup")
#: Environment of every worker (and of the code it runs), besides HOME/TMPDIR/PWD: one thread
#: per numeric library, and OpenCV log lines without their clock (``[ WARN:0@0.088] …``), which
#: would make the tool message the model reads differ from run to run.
WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "OPENCV_LOG_TIMESTAMP": "0",
}


class NotStarted(Exception):
    """The worker died or hung before running the code; the call can go to another worker."""


# --- one long-lived thread starts every worker process ----------------------------------------
# bwrap's --die-with-parent and the process level's PDEATHSIG fire when the *thread* that
# forked the worker exits, not the process. Workers are therefore always started from this
# thread, which lives as long as the process, never from a caller's short-lived thread.


class _Spawner:
    """Runs ``fn`` (a Popen) on the process's one long-lived spawner thread."""

    def __init__(self) -> None:
        self._pid = -1
        self._lock = threading.Lock()
        self._queue: list[tuple[Any, Future]] = []
        self._cond = threading.Condition(self._lock)

    def call(self, fn: Any) -> Any:
        fut: Future = Future()
        with self._cond:
            if self._pid != os.getpid():  # first use, or first use after fork()
                self._pid = os.getpid()
                self._queue = []
                threading.Thread(
                    target=self._loop, name="arft-sandbox-spawner", daemon=True
                ).start()
            self._queue.append((fn, fut))
            self._cond.notify()
        return fut.result()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                fn, fut = self._queue.pop(0)
            try:
                fut.set_result(fn())
            except BaseException as e:
                fut.set_exception(e)


_spawner = _Spawner()


def _after_fork_in_child() -> None:
    global _spawner
    _spawner = _Spawner()


os.register_at_fork(after_in_child=_after_fork_in_child)


# --- one worker ---------------------------------------------------------------------------------


class Worker:
    """A fork-server process (inside bwrap, or plain) and the two pipes to it."""

    def __init__(self, level: str, limits: SandboxLimits, seccomp_hex: str, bwrap: str | None):
        self.level = level
        self.limits = limits
        self.broken = False
        self.info: dict = {}
        self._tmpdir: str | None = None
        self._owner_pid = os.getpid()
        self._procs: list[tuple[int, int | None]] = []
        root = os.geteuid() == 0
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **WORKER_ENV}
        req_r, self._req_w = os.pipe()
        self._resp_r, resp_w = os.pipe()
        for fd in (self._req_w, self._resp_r):
            os.set_inheritable(fd, False)
            os.set_blocking(fd, False)
            _protocol.grow_pipe(fd)
        drop_to = None
        try:
            if level == "bwrap":
                workdir = "/tmp"
                argv, sources = _bwrap.build(
                    bwrap,
                    _PACKAGE_DIR,
                    limits.tmpfs_bytes,
                    {**env, "HOME": "/tmp"},
                    (req_r, resp_w),
                )
                if root:
                    from . import _launcher

                    cfg = {
                        "stage": sources,
                        "uid": _bwrap.SANDBOX_UID,
                        "gid": _bwrap.SANDBOX_GID,
                        "argv": argv,
                    }
                    argv = [sys.executable, "-I", "-S", "-B", _launcher.__file__, json.dumps(cfg)]
                else:
                    from ._launcher import resolve_tokens

                    argv = resolve_tokens(argv, sources)
                popen_env, cwd = {}, "/"
            else:
                from ._launcher import world_reachable

                parent = tempfile.gettempdir()
                if root and not world_reachable(parent):
                    parent = "/tmp"  # e.g. TMPDIR under /root: uid 65534 could not enter it
                self._tmpdir = workdir = tempfile.mkdtemp(prefix="arft-sandbox-", dir=parent)
                if root:
                    # A uid of its own: RLIMIT_NPROC counts every task of a uid, and 65534 is
                    # shared with bwrap sandboxes and other workers. The worker falls back to
                    # 65534 where that uid cannot be used (e.g. an unmapped uid in a container).
                    own = _PRIVATE_UID_BASE + secrets.randbelow(_PRIVATE_UID_SPAN)
                    drop_to = [[own, own], [_bwrap.SANDBOX_UID, _bwrap.SANDBOX_GID]]
                argv = [sys.executable, "-I", "-B", os.path.join(_PACKAGE_DIR, "worker.py")]
                argv += [str(req_r), str(resp_w)]
                popen_env, cwd = {**env, "HOME": workdir}, workdir

            def spawn() -> subprocess.Popen:
                return subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    pass_fds=(req_r, resp_w),
                    env=popen_env,
                    cwd=cwd,
                    start_new_session=True,
                )

            try:
                self.proc = _spawner.call(spawn)
            except OSError as e:
                raise SandboxError(f"could not start {argv[0]!r}: {e}") from None
        except BaseException:
            for fd in (self._req_w, self._resp_r):
                os.close(fd)
            self._remove_tmpdir()
            raise
        finally:
            os.close(req_r)
            os.close(resp_w)
        os.set_blocking(self.proc.stderr.fileno(), False)
        try:
            deadline = time.monotonic() + _START_TIMEOUT_S
            cfg = {
                "level": level,
                "workdir": workdir,
                "seccomp": seccomp_hex,
                "env": env,
                "drop_to": drop_to,
                "parent_pid": os.getpid(),
                "huge_pages": huge_pages_enabled(),
            }
            _protocol.send_all(self._req_w, [_protocol.pack_frame(cfg)], deadline)
            ready = _protocol.recv_frame(self._resp_r, deadline)
            if ready.get("ev") != "ready":
                raise _protocol.ProtocolError(f"unexpected first frame {ready.get('ev')!r}")
            self.info = ready
            # Remember the worker's processes (pid, start time) to kill and await them later.
            self._procs = [(pid, _start_time(pid)) for pid in self._find_pids()]
        except (OSError, EOFError, TimeoutError, _protocol.ProtocolError) as e:
            detail = self._stderr_tail()
            self.kill()
            raise SandboxError(
                f"the {level} sandbox worker did not start ({type(e).__name__}: {e})."
                + (f" Its stderr:\n{detail}" if detail else "")
            ) from None

    # -- lifecycle --

    def alive(self) -> bool:
        return not self.broken and self.proc.poll() is None

    def host_pids(self) -> list[int]:
        """Host pids of this worker's processes: [bwrap, bwrap's init, server] or [server]."""
        return [pid for pid, _ in self._procs]

    def _find_pids(self) -> list[int]:
        pids = [self.proc.pid]
        for _ in range(2 if self.level == "bwrap" else 0):
            kids = _children(pids[-1])
            if not kids:
                break
            pids.append(kids[0])
        return pids

    def _server_children(self) -> list[tuple[int, int | None]]:
        if not self._procs or os.getpid() != self._owner_pid:
            return []
        server, started = self._procs[-1]
        kids, level = [], [server]
        for _ in range(2):  # the template (and orphans), then the template's own children
            level = [kid for pid in level for kid in _children(pid)]
            kids += level
        kids = [(pid, _start_time(pid)) for pid in kids]
        return kids if _start_time(server) == started else []  # not a reused pid's children

    def terminate(self) -> None:
        """SIGKILL the worker's processes (safe from any thread; fds stay open)."""
        self.broken = True
        if os.getpid() != self._owner_pid:
            return  # a forked child must not touch its parent's workers
        proc = getattr(self, "proc", None)
        if proc is not None and proc.returncode is None:  # never signal a reaped (reusable) pid
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
        for pid, started in self._procs[1:]:  # bwrap's init: its death ends the pid namespace
            if _start_time(pid) == started:  # still the same process, not a reused pid
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass

    def kill(self) -> None:
        """Kill the worker and everything in it, reap it, close its pipes, remove its temp dir.

        Only for the thread that holds the worker (or when nobody does)."""
        # The server's template dies with it (it is in the server's process group, and has
        # PDEATHSIG), and the template's children (the spare waiting for the next call, or a
        # running call) die with the template (PDEATHSIG). Note them now, while they are
        # still there to find, to wait for them below.
        procs = self._procs + self._server_children()
        self.terminate()
        if os.getpid() != self._owner_pid:
            return
        proc = getattr(self, "proc", None)
        if proc is not None:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - unkillable worker
                logger.error("sandbox worker %d did not die after SIGKILL", proc.pid)
            if proc.stderr is not None:
                proc.stderr.close()
        # Return only once every process of the worker is gone, so callers can count them.
        deadline = time.monotonic() + 5
        while any(_running(p, t) for p, t in procs) and time.monotonic() < deadline:
            time.sleep(0.002)
        for fd in (self._req_w, self._resp_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self._req_w = self._resp_r = -1
        self._remove_tmpdir()

    def abandon(self) -> None:
        """After fork(): drop this process's copies of the pipes without killing anything."""
        self.broken = True
        for fd in (self._req_w, self._resp_r):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def _remove_tmpdir(self) -> None:
        """Remove a process-level worker's temp dir, whatever its calls left in it."""
        if self._tmpdir and os.getpid() == self._owner_pid:
            if not _cleanup.remove_tree(self._tmpdir):
                logger.warning("could not remove the sandbox temp dir %s", self._tmpdir)
            self._tmpdir = None

    def _stderr_tail(self) -> str:
        try:
            data = os.read(self.proc.stderr.fileno(), 1 << 16)
        except (OSError, ValueError, AttributeError):
            return ""
        return data.decode("utf-8", "backslashreplace").strip()[-2000:]

    # -- one call --

    def run(self, header: dict, payload: list, wall: float) -> ExecResult:
        """Run one prepared request; raise NotStarted if the worker fails before forking."""
        t_ack = time.monotonic() + _ACK_TIMEOUT_S + sum(len(p) for p in payload) / 50e6
        try:
            _protocol.send_all(self._req_w, [_protocol.pack_frame(header), *payload], t_ack)
            ev = _protocol.recv_frame(self._resp_r, t_ack)
        except (OSError, EOFError, TimeoutError, _protocol.ProtocolError) as e:
            self.kill()
            raise NotStarted(f"{type(e).__name__}: {e}") from None
        if ev.get("ev") == "fatal":
            _log_trace(ev)
            self.kill()
            raise NotStarted(str(ev.get("message", ""))[:300])
        if ev.get("ev") == "rejected" and ev.get("id") == header["id"]:
            msg = str(ev.get("message", ""))[:500]
            return ExecResult(status="error", stderr=msg, reason=msg)
        if ev.get("ev") != "started" or ev.get("id") != header["id"]:
            self.kill()
            return _failure("bad_result", f"the sandbox worker sent {ev.get('ev')!r}")
        child_pid = ev.get("pid")

        watchdog = time.monotonic() + wall + max(2.0, wall) + 3.0 + _SLACK_S
        try:
            done = _protocol.recv_frame(self._resp_r, watchdog)
            _log_trace(done)
            if done.get("ev") == "fatal":
                raise _protocol.ProtocolError(str(done.get("message", ""))[:300])
            if done.get("ev") != "done" or done.get("id") != header["id"]:
                raise _protocol.ProtocolError(f"unexpected frame {done.get('ev')!r}")
            result = self._read_done(done, watchdog + _SLACK_S, wall)
        except TimeoutError:
            self._kill_call(child_pid)
            return _failure(
                "timeout",
                f"the sandbox worker stopped answering (wall limit {wall:g} s); it was replaced",
            )
        except EOFError as e:
            self._kill_call(child_pid)
            return _failure(
                "killed", f"the sandbox worker died during the call ({e}); it was replaced"
            )
        except _protocol.ProtocolError as e:
            self._kill_call(child_pid)
            return _failure(
                "bad_result", f"the sandbox worker failed ({str(e)[:300]}); it was replaced"
            )
        except Exception as e:  # noqa: BLE001 - a host-side bug must not end the episode
            logger.exception("sandbox call failed on the host side")
            self._kill_call(child_pid)
            return _failure(
                "bad_result", f"the sandbox failed ({type(e).__name__}); the worker was replaced"
            )
        if not done.get("healthy", False):
            self.kill()  # it said it cannot guarantee a clean state; replace it
        return result

    def _kill_call(self, child_pid: Any) -> None:
        """Kill the worker; for ``process``, also the call's process group (not in a pid ns).

        The group is killed only if it belongs to the worker's session: the pid came from the
        worker, and a confused worker must not make the host kill an unrelated group."""
        if self.level == "process" and type(child_pid) is int and child_pid > 1:
            try:
                if os.getsid(child_pid) == self.proc.pid:
                    os.killpg(child_pid, signal.SIGKILL)
            except OSError:
                pass
        self.kill()

    def _read_done(self, h: dict, deadline: float, wall: float) -> ExecResult:
        lim = self.limits
        status = h.get("status")
        if status not in STATUSES:
            raise _protocol.ProtocolError(f"unknown status {status!r}")
        exit_code, sig, limit = h.get("exit_code"), h.get("signal"), h.get("limit")
        if exit_code is not None and not (type(exit_code) is int and 0 <= exit_code <= 255):
            raise _protocol.ProtocolError("bad exit code")
        if sig is not None and not (type(sig) is int and 1 <= sig <= 64):
            raise _protocol.ProtocolError("bad signal")
        if limit is not None and limit not in _LIMIT_NAMES:
            raise _protocol.ProtocolError("bad limit name")
        lens = {}
        for key in ("stdout_len", "stdout_dropped", "stderr_len", "stderr_dropped"):
            v = h.get(key)
            if type(v) is not int or v < 0:
                raise _protocol.ProtocolError(f"bad {key}")
            lens[key] = v
        if lens["stdout_len"] > lim.stdout_bytes or lens["stderr_len"] > lim.stdout_bytes:
            raise _protocol.ProtocolError("stdout/stderr larger than the cap")
        specs = h.get("images")
        errors = h.get("image_errors")
        if not isinstance(specs, list) or len(specs) > _protocol.MAX_IMAGES:
            raise _protocol.ProtocolError("bad image list")
        if not isinstance(errors, list) or not all(isinstance(e, str) for e in errors):
            raise _protocol.ProtocolError("bad image errors")
        total, names = 0, set()
        for spec in specs:
            shape = spec.get("shape") if isinstance(spec, dict) else None
            if (
                not isinstance(shape, list)
                or len(shape) != 3
                or not all(type(x) is int for x in shape)
                or shape[2] != 3
                or not all(1 <= x <= lim.max_image_side for x in shape[:2])
                or spec.get("len") != shape[0] * shape[1] * 3
            ):
                raise _protocol.ProtocolError(f"bad image header {spec!r:.200}")
            try:
                names.add(_protocol.check_file_name(spec.get("name")))
            except ValueError as e:
                raise _protocol.ProtocolError(str(e)) from None
            total += spec["len"]
        if len(names) != len(specs):
            raise _protocol.ProtocolError("duplicate image names")
        if total > lim.max_result_bytes:
            raise _protocol.ProtocolError("images larger than max_result_bytes")

        stdout = _protocol.recv_exact(self._resp_r, lens["stdout_len"], deadline)
        stderr = _protocol.recv_exact(self._resp_r, lens["stderr_len"], deadline)
        images = {}
        for spec in specs:
            buf = _protocol.recv_exact(self._resp_r, spec["len"], deadline)
            images[spec["name"]] = np.frombuffer(buf, dtype=np.uint8).reshape(spec["shape"])

        reason = _limit_reason(limit, lim, wall, self.level)
        errors = [e[:500] for e in errors[:8]]
        if errors:
            reason = "; ".join(filter(None, [reason, *errors]))
            if status == "ok":
                status = "bad_result"
        return ExecResult(
            status=status,
            exit_code=exit_code,
            signal=sig,
            stdout=_text(stdout, lens["stdout_dropped"]),
            stderr=_text(stderr, lens["stderr_dropped"]),
            stdout_truncated=lens["stdout_dropped"] > 0,
            stderr_truncated=lens["stderr_dropped"] > 0,
            images=images,
            reason=reason,
        )


def huge_pages_enabled() -> bool:
    """Whether this kernel backs ``MADV_HUGEPAGE`` ranges with transparent huge pages (the
    calls' processes fault in their first heap that way). Read here, on the host: inside
    bwrap there is no /sys. ``madvise`` alone cannot tell, it succeeds under ``never`` too."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def _log_trace(frame: dict) -> None:
    """Log a worker's own traceback (for whoever runs arft; the model never reads it)."""
    trace = frame.get("trace")
    if isinstance(trace, str) and trace:
        logger.warning("sandbox worker failure:\n%s", trace[-4000:])


def _text(data: bytes, dropped: int) -> str:
    s = bytes(data).decode("utf-8", "backslashreplace")
    return s + truncation_marker(dropped) if dropped else s


def _limit_reason(limit: str | None, lim: SandboxLimits, wall: float, level: str) -> str:
    if limit is None:
        return ""
    return {
        "wall": f"wall-clock limit of {wall:g} s exceeded",
        "cpu": f"CPU time limit of {math.ceil(lim.cpu_s)} s exceeded",
        "memory": f"memory limit of {format_bytes(lim.memory_bytes)} exceeded",
        "fsize": f"file size limit of {format_bytes(lim.fsize_bytes)} exceeded",
        "disk": (
            f"the work dir's {format_bytes(lim.tmpfs_bytes)} of space ran out"
            if level == "bwrap"
            else "the disk ran out of space"
        ),
        "nofile": f"open-file limit of {lim.nofile} exceeded",
        "nproc": f"process/thread limit of {lim.nproc} exceeded",
        "setup": "the sandbox could not confine this call; the worker was replaced",
    }[limit]


def _failure(status: str, reason: str) -> ExecResult:
    return ExecResult(status=status, reason=reason)  # type: ignore[arg-type]


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot); tells a process from a reused pid."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def _running(pid: int, started: int | None) -> bool:
    """True while ``pid`` is the same process as when recorded, and not a zombie."""
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] != "Z" and int(fields[19]) == started


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return []


# --- the pool -----------------------------------------------------------------------------------


class Pool:
    """Up to ``size`` workers, started on demand and handed to one thread at a time."""

    def __init__(self, make: Any, size: int) -> None:
        self._make = make
        self._size = size
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._cond = threading.Condition()
        self._starting = 0
        self.closed = False

    def _count(self) -> int:
        return len(self._idle) + len(self._busy) + self._starting

    def acquire(self) -> Worker:
        """Return an idle live worker, start a new one if below ``size``, or wait."""
        while True:
            stale = []
            with self._cond:
                while True:
                    if self.closed:
                        raise SandboxError("this Sandbox is closed")
                    while self._idle:
                        w = self._idle.pop()
                        if w.alive():
                            self._busy.add(w)
                            break
                        stale.append(w)  # died while idle: replaced below, the call goes on
                    else:
                        w = None
                    if w is not None or self._count() < self._size:
                        break
                    self._cond.wait()
                if w is None:
                    self._starting += 1
            for dead in stale:
                dead.kill()
            if w is not None:
                return w
            try:
                w = self._make()
            except SandboxError:
                with self._cond:
                    self._starting -= 1
                    self._cond.notify_all()
                    if self._count() == 0:
                        raise
                    # Others exist: run with fewer workers rather than fail the call.
                    logger.warning(
                        "could not start another sandbox worker; using %d", self._count()
                    )
                    self._size = max(1, self._count())
                continue
            with self._cond:
                self._starting -= 1
                if not self.closed:
                    self._busy.add(w)
                    return w
            w.kill()
            raise SandboxError("this Sandbox is closed")

    def release(self, w: Worker) -> None:
        """Give a worker back; a dead or broken one is killed and its slot freed."""
        with self._cond:
            self._busy.discard(w)
            keep = not self.closed and w.alive()
            if keep:
                self._idle.append(w)
            self._cond.notify()
        if not keep:
            w.kill()

    def workers(self) -> list[Worker]:
        with self._cond:
            return [*self._idle, *self._busy]

    def close(self) -> None:
        """Kill idle workers; busy ones are terminated now and cleaned up by their caller."""
        with self._cond:
            self.closed = True
            idle, busy = list(self._idle), list(self._busy)
            self._idle.clear()
            self._cond.notify_all()
        for w in idle:
            w.kill()
        for w in busy:
            w.terminate()

    def abandon(self) -> None:
        """After fork(): forget the parent's workers without touching them."""
        for w in self.workers():
            w.abandon()
