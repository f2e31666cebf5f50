"""Fork-server that runs untrusted Python, one per sandbox worker. Trusted code.

Started by the host (``sandbox.py``) as ``python -I -B worker.py REQ_FD RESP_FD``: inside
bubblewrap for the ``bwrap`` level, as a plain process for the ``process`` level. It imports
numpy, cv2 and PIL once. Between calls it keeps one *spare*: the next call's process, already
``fork()``ed, which has armed ``PDEATHSIG``, pointed stdin/stdout/stderr at /dev/null and two
capped pipes, closed every other fd, entered its Landlock domain, and waits on a control
pipe. Then, for every request:

1. writes the input files into a fresh work dir,
2. hands the request to the spare (forking a fresh one if the spare died), which joins its own
   process group, sets rlimits, clears the environment, loads the seccomp filter and
   ``exec()``s the code; afterwards the same process decodes the
   image files the code wrote,
3. reads the pipes until *that process itself* exits or the wall-clock deadline passes (never
   until pipe EOF: an orphaned grandchild may hold the pipe open forever),
4. kills the whole process group, sweeps and reaps every remaining process,
5. validates the decoded images; those the child did not deliver (it crashed, timed out, or
   sent garbage) are decoded by a fresh confined child,
6. deletes everything the call wrote and puts back the mode bits and extended attributes of
   the work area (``_cleanup``: iterative, fd-relative, bounded in time; never raises),
   answers with one frame plus raw payloads, and only then forks the spare for the next call
   (so the sweep never meets it). A failure after the call started still answers it, as
   ``bad_result`` with one short line and the call's own output; never with a traceback.

Every call still runs in a new process forked from a server that never ran untrusted code;
the spare only moves the fork out of the time the caller waits. The bytes of a call (its
code, inputs, stdout, stderr, returned pixels, the tag it may write) are held only in buffers
left out of every fork (``_unshared``), never in the server's heap, so the next call's
process cannot find them in memory it inherits. Names the code chooses (of files and image
files) and the texts of image errors still pass through ordinary Python objects. The fork-server itself is not dumpable
(children cannot read its memory) and is a child subreaper (orphans come back to it to be
reaped).
"""

from __future__ import annotations

import builtins
import ctypes
import errno
import io
import marshal
import math
import mmap
import os
import resource
import select
import signal
import sys
import time
import traceback
import types
from typing import NoReturn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _cleanup  # noqa: E402
import _imageio  # noqa: E402
import _landlock  # noqa: E402
import _launcher  # noqa: E402
import _protocol  # noqa: E402
import _seccomp  # noqa: E402

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt() parameters
_EXIT_SETUP_FAILED = 121  # the child could not be confined; it never ran the code
_WIPE_BUDGET_S = 10.0  # a work area not clean by then is given up with its worker
_MAX_LISTED = 100_000  # work-dir entries looked at for images; the code may make millions
_TAGS = ("memory", "fsize", "disk", "nofile", "nproc")  # what a dying call may report
_HAND_OVER_S = 2.0  # a live spare reads its request at once; one that does not is replaced
_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4


def _prctl(option: int, arg: int) -> None:
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def _count_tasks(uid: int, skip: int = 0) -> int:
    """Tasks (processes and threads) whose real uid is ``uid``, as RLIMIT_NPROC counts them,
    leaving out process ``skip``."""
    n = 0
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == skip:
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                n += int(fields["Threads"])
        except (OSError, KeyError, ValueError):
            pass
    return n


def _expose_import_paths() -> list[int]:
    """Keep the interpreter's import paths usable after dropping root (``process`` level).

    A venv or pyenv under ``/root`` (mode 0700) is unreachable for uid 65534. Before the drop
    we open each such sys.path entry as an O_PATH fd and import through
    ``/proc/self/fd/N`` instead: following that link skips the permission checks on the
    directories above it, while files below it still need their ordinary "other" bits.
    Returns the fds, which every child must keep open.
    """
    rewrite: dict[str, str] = {}
    for entry in sys.path:
        if (
            entry
            and entry not in rewrite
            and os.path.isdir(entry)
            and not _launcher.world_reachable(entry)
        ):
            fd = os.open(entry, os.O_PATH | os.O_DIRECTORY)
            rewrite[entry] = f"/proc/self/fd/{fd}"
    if not rewrite:
        return []

    def moved(p: str) -> str:
        for old, new in rewrite.items():
            if p == old or p.startswith(old + "/"):
                return new + p[len(old) :]
        return p

    sys.path[:] = [moved(p) for p in sys.path]
    for mod in list(sys.modules.values()):
        paths = getattr(mod, "__path__", None)
        if isinstance(paths, list):
            paths[:] = [moved(p) if isinstance(p, str) else p for p in paths]
    sys.path_importer_cache.clear()
    import importlib

    importlib.invalidate_caches()
    return [int(v.rsplit("/", 1)[1]) for v in rewrite.values()]


def _unshared(n: int):  # noqa: ANN202 - a numpy array; numpy is imported lazily here
    """``n`` zeroed bytes (a uint8 array) that ``fork()`` leaves out of every child.

    For the server's reusable I/O buffers. Whenever the server works, a child of it is alive
    (the spare waiting for the request, or the running call) and shares its memory
    copy-on-write, so every server write to an inherited page would cost a page copy. And a
    call's process has no business reading what earlier calls sent and received, which these
    buffers still hold (in a child, touching them faults).
    """
    import numpy as np

    m = mmap.mmap(-1, max(n, 1))
    m.madvise(mmap.MADV_DONTFORK)
    return np.frombuffer(m, np.uint8)


class _Sink:
    """Keeps the first ``cap`` bytes of a stream and counts the rest.

    Reads straight into a buffer kept across calls (no fresh pages) and left out of every
    fork (``_unshared``): what a call printed never lands in the server's heap, which the
    next call's process inherits. Bytes beyond the cap go to a scratch buffer, for the same
    reason.
    """

    _overflow = None

    def __init__(self) -> None:
        self.buf = _unshared(0)
        self.n = 0
        self.cap = 0
        self.dropped = 0

    def reset(self, cap: int) -> None:
        self.n, self.cap, self.dropped = 0, cap, 0

    def read_from(self, fd: int) -> int:
        if self.n >= self.cap:
            if _Sink._overflow is None:
                _Sink._overflow = _unshared(1 << 16)
            k = os.readv(fd, [_Sink._overflow])
            self.dropped += k
            return k
        if len(self.buf) - self.n < 1 << 16:
            grown = _unshared(
                len(self.buf) + min(max(len(self.buf), 1 << 20), self.cap + (1 << 16))
            )
            grown[: self.n] = self.buf[: self.n]
            self.buf = grown
        k = os.readv(fd, [memoryview(self.buf)[self.n : min(len(self.buf), self.cap)]])
        self.n += k
        return k

    def view(self) -> memoryview:
        return memoryview(self.buf)[: self.n]


def _classify_exception(e: BaseException) -> bytes:
    """Map an uncaught exception to a resource-limit tag (b"" when it is an ordinary error)."""
    if isinstance(e, MemoryError):
        return b"memory"
    if isinstance(e, OSError):
        return {
            errno.EFBIG: b"fsize",
            errno.ENOSPC: b"disk",
            errno.EMFILE: b"nofile",
            errno.EAGAIN: b"nproc",
        }.get(e.errno, b"")
    if isinstance(e, RuntimeError) and "can't start new thread" in str(e):
        return b"nproc"
    msg = str(e)
    if type(e).__name__ == "error" and (
        "Insufficient memory" in msg or "Failed to allocate" in msg
    ):
        return b"memory"
    return b""


class _Spare:
    """The server's end of a forked child that waits for its request (see the module doc).

    Its stdout/stderr/tag/image pipes exist before the request, so the call only has to send
    the request down ``ctl``.
    """

    def __init__(self, pid: int, ctl: int, out: int, err: int, tag: int, img: int) -> None:
        self.pid, self.ctl, self.out, self.err, self.tag, self.img = pid, ctl, out, err, tag, img
        self.reaped = False

    def alive(self) -> bool:
        """False if it died or was stopped while waiting (e.g. signalled from outside)."""
        if self.reaped:
            return False
        pid, status = os.waitpid(self.pid, os.WNOHANG | os.WUNTRACED)
        if pid == 0:
            return True
        self.reaped = not os.WIFSTOPPED(status)  # a stopped one is discarded unreaped
        return False

    def hand_over(self, request: bytes, code: memoryview) -> None:
        """Send the request, then the code; raises OSError or TimeoutError if the child does
        not take them."""
        _protocol.send_all(
            self.ctl,
            [len(request).to_bytes(8, "little"), request, code],
            time.monotonic() + _HAND_OVER_S,
        )
        os.close(self.ctl)
        self.ctl = -1

    def discard(self) -> None:
        """Kill and reap it (it never received a request) and close the server's ends."""
        if not self.reaped:
            try:
                os.kill(self.pid, signal.SIGKILL)  # our unreaped child: the pid is still ours
            except OSError:
                pass
            os.waitpid(self.pid, 0)
            self.reaped = True
        for fd in (self.ctl, self.out, self.err, self.tag, self.img):
            if fd >= 0:
                os.close(fd)
        self.ctl = self.out = self.err = self.tag = self.img = -1


def _receive_request(fd: int) -> tuple:
    """Child side: the request the server handed over (EOFError if it closed the pipe):
    ``(code, lim, job, written, deadline, nproc_base)``."""
    n = int.from_bytes(_protocol.read_exact(fd, 8), "little")
    code_len, *rest = marshal.loads(_protocol.read_exact(fd, n))
    return (_protocol.read_exact(fd, code_len), *rest)


class Server:
    """The fork-server loop; see the module docstring."""

    def __init__(self, cfg: dict, req_fd: int, resp_fd: int) -> None:
        self.cfg = cfg
        self.req_fd = req_fd
        self.resp_fd = resp_fd
        self.level = cfg["level"]
        self.workdir = cfg["workdir"]
        self.prog = bytes.fromhex(cfg["seccomp"])
        self.prog_offsets = _seccomp.placeholder_offsets(self.prog)
        self.keep_fds: list[int] = []
        self.calls = 0
        self.pid = os.getpid()
        self.base_env = dict(cfg["env"])
        self._inbuf = _unshared(0)
        self._scratch: dict = {}
        self._image_sink = _Sink()
        self._out, self._err = _Sink(), _Sink()
        self._tagbuf = _unshared(64)
        self._codebuf = _unshared(0)
        self.spare: _Spare | None = None
        self._answering: int | None = None  # the id of the call whose "done" is owed

    # --- start-up ---------------------------------------------------------------------------

    def start(self) -> None:
        import cv2
        import numpy
        import PIL
        from PIL import Image

        Image.init()  # load every format plugin now, not lazily in a child
        cv2.setNumThreads(0)  # no OpenCV thread pool in the parent: forking it is unsafe
        _imageio.imwrite_log.install(cv2)  # each child records its own lossless writes
        _seccomp.load_libc()
        candidates = self.cfg.get("drop_to")
        if candidates:
            self.keep_fds = _expose_import_paths()
            os.setgroups([])
            for i, (uid, gid) in enumerate(candidates):
                try:
                    os.chown(self.workdir, uid, gid)
                    os.setresgid(gid, gid, gid)
                    os.setresuid(uid, uid, uid)
                    break
                except OSError:
                    if i == len(candidates) - 1:
                        raise
        if self.level == "process":
            # Die with the host; set after the uid change, which clears PDEATHSIG.
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != self.cfg["parent_pid"]:
                os._exit(1)
        _prctl(_PR_SET_DUMPABLE, 0)
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)
        self.nproc_base = _count_tasks(os.getuid())
        # What the writable work area holds before any call (for bwrap: mount points of
        # binds that live under /tmp). After every call everything else is deleted and the
        # mode bits and extended attributes of what stays are put back, so nothing a call
        # writes, inside or outside its own work dir, is seen by the next call.
        self.baseline = _cleanup.snapshot(self.workdir)
        # Every call gets a Landlock domain where the kernel has one (signal scope, no ptrace
        # of bwrap's pid 1 or of us); the process level, without mounts, also confines reads.
        self.landlock_abi = _landlock.abi_version()
        self.readable = _landlock.readable_roots() if self.level == "process" else None
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        _protocol.write_all(
            self.resp_fd,
            _protocol.pack_frame(
                {
                    "ev": "ready",
                    "pid": os.getpid(),
                    "uid": os.getuid(),
                    "nproc_base": self.nproc_base,
                    "landlock": self.landlock_abi,
                    "versions": {
                        "python": sys.version.split()[0],
                        "numpy": numpy.__version__,
                        "cv2": cv2.__version__,
                        "PIL": PIL.__version__,
                    },
                }
            ),
        )

    def serve(self) -> None:
        try:
            self._serve()
        finally:
            if self.spare is not None:  # PDEATHSIG would kill it too; do not leave it to that
                self.spare.discard()

    def _serve(self) -> None:
        while True:
            # The previous call is fully finished (swept, wiped, answered): fork the next
            # call's process now, while the host is busy with the answer.
            if self.spare is None:
                self.spare = self._fork_spare()
            try:
                req = _protocol.read_frame(self.req_fd)
            except EOFError:
                return
            self._answering = None
            try:
                self.handle(req)
            except (BrokenPipeError, SystemExit):
                return
            except BaseException as e:
                self._report_failure(e)
                return

    def _report_failure(self, e: BaseException) -> None:
        """Tell the host, in one short line, that this server failed; then it exits.

        Before the call started the host retries on another worker; after, the call ends as
        ``bad_result`` with that line. The traceback travels apart, for the host's log only:
        it is never what the model reads."""
        what = f"{type(e).__name__}: {e}"[:300]
        trace = traceback.format_exc(limit=8)[-4000:]
        if self._answering is None:
            frame = {"ev": "fatal", "message": what, "trace": trace}
        else:
            frame = {
                "ev": "done",
                "id": self._answering,
                "status": "bad_result",
                "exit_code": None,
                "signal": None,
                "limit": None,
                "stdout_len": 0,
                "stdout_dropped": 0,
                "stderr_len": 0,
                "stderr_dropped": 0,
                "images": [],
                "image_errors": [f"the sandbox failed after running the code ({what})"],
                "healthy": False,
                "trace": trace,
            }
        try:
            _protocol.write_all(self.resp_fd, _protocol.pack_frame(frame))
        except BaseException:
            pass

    # --- one call ---------------------------------------------------------------------------

    def handle(self, req: dict) -> None:
        import numpy as np

        # The code goes into a buffer left out of every fork, never into our heap.
        if len(self._codebuf) < req["code_len"]:
            self._codebuf = _unshared(req["code_len"])
        code = memoryview(self._codebuf)[: req["code_len"]]
        _protocol.read_into(self.req_fd, code)
        # File payloads land in a buffer kept across calls: fresh memory costs a page fault
        # per 4 KiB, which is most of the cost of moving an image.
        total = sum(f["len"] for f in req["files"])
        if len(self._inbuf) < total:
            self._inbuf = _unshared(total)
        _protocol.read_into(self.req_fd, memoryview(self._inbuf)[:total])
        lim = req["limits"]
        wall = float(req["wall_s"])

        self.calls += 1
        job = os.path.join(self.workdir, f"job-{self.calls}")
        os.mkdir(job, 0o700)
        written = {}
        pos = 0
        try:
            for f in req["files"]:
                name = _protocol.check_file_name(f["name"])
                data = memoryview(self._inbuf)[pos : pos + f["len"]]
                pos += f["len"]
                path = os.path.join(job, name)
                with open(path, "wb") as fh:
                    if f["kind"] == "rgb":
                        arr = np.frombuffer(data, dtype=np.uint8).reshape(f["shape"])
                        fh.write(_imageio.bmp_header(*arr.shape[:2]))
                        fh.write(_imageio.bmp_rows(arr, self._scratch, _unshared))
                    else:
                        fh.write(data)
                st = os.stat(path)
                written[name] = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError as e:  # e.g. the inputs do not fit in the tmpfs
            self._wipe()
            msg = f"the input files could not be written to the work dir ({e.strerror})"
            _protocol.write_all(
                self.resp_fd,
                _protocol.pack_frame({"ev": "rejected", "id": req["id"], "message": msg}),
            )
            return

        child, started = self._start_call(code, lim, job, written, wall)
        pid, out_r, err_r, tag_r, img_r = child.pid, child.out, child.err, child.tag, child.img
        deadline = started + wall
        _protocol.write_all(
            self.resp_fd, _protocol.pack_frame({"ev": "started", "id": req["id"], "pid": pid})
        )
        self._answering = req["id"]  # from here on a failure still answers this call

        out, err = self._out, self._err
        out.reset(lim["stdout_bytes"])
        err.reset(lim["stdout_bytes"])
        own_images = self._image_sink
        own_images.reset(lim["max_result_bytes"] + 4096 * (_protocol.MAX_IMAGES + 1))
        streams = {out_r: out, err_r: err, img_r: own_images}
        timed_out = self._watch(pid, streams, deadline)
        _, wstatus, ru = os.wait4(pid, 0)
        duration = time.monotonic() - started
        healthy = self._sweep(pid)
        for fd, buf in streams.items():
            _drain(fd, buf)
            os.close(fd)
        try:
            got = memoryview(self._tagbuf)[: os.readv(tag_r, [self._tagbuf])]
        except BlockingIOError:
            got = memoryview(b"")
        os.close(tag_r)
        # "C" once confined, then the first line a dying process wrote (forked children
        # share the pipe, so later lines are ignored). Matched against the known tags in
        # place: the code could write anything there, and none of it may enter our heap.
        confined = got[:1] == b"C"
        tag = next((t for t in _TAGS if got[1 : len(t) + 2] == f"{t}\n".encode()), "")

        status, exit_code, sig, limit = "error", None, None, None
        cpu_used = ru.ru_utime + ru.ru_stime
        if timed_out:
            status, limit = "timeout", "wall"
        elif os.WIFSIGNALED(wstatus):
            sig = os.WTERMSIG(wstatus)
            cpu_soft = math.ceil(lim["cpu_s"])
            if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_used >= cpu_soft - 0.05):
                status, limit = "killed", "cpu"
            elif sig == signal.SIGXFSZ:
                status, limit = "killed", "fsize"
            else:
                status = "signal"
        else:
            exit_code = os.WEXITSTATUS(wstatus)
            if not confined:
                status, limit = "killed", "setup"
                healthy = False  # confinement failed: never trust this worker again
            elif exit_code == 0:
                status = "ok"
            elif tag:
                status, limit = "killed", tag

        try:
            images, image_errors = self._collect_images(job, written, lim, wall, own_images)
        except Exception as e:  # noqa: BLE001 - the call's own output still goes back
            images, healthy = [], False
            image_errors = [f"the images could not be collected ({type(e).__name__}: {e})"[:300]]
        if not self._wipe():
            healthy = False
        header = {
            "ev": "done",
            "id": req["id"],
            "status": status,
            "exit_code": exit_code,
            "signal": sig,
            "limit": limit,
            "cpu_s": round(cpu_used, 4),
            "run_s": round(duration, 4),
            "stdout_len": out.n,
            "stdout_dropped": out.dropped,
            "stderr_len": err.n,
            "stderr_dropped": err.dropped,
            "images": [{"name": n, "shape": list(a.shape), "len": a.nbytes} for n, a in images],
            "image_errors": image_errors,
            "healthy": healthy,
        }
        try:
            frame = _protocol.pack_frame(header)
        except _protocol.ProtocolError:  # cannot happen with bounded errors; never lose stdout
            header["image_errors"] = ["the list of image problems was too long to return"]
            frame = _protocol.pack_frame(header)
        _protocol.write_all(
            self.resp_fd,
            frame,
            out.view(),
            err.view(),
            *(memoryview(a).cast("B") for _, a in images),
        )
        self._answering = None
        if not healthy:
            raise SystemExit(0)  # the host sees EOF after this answer and replaces us

    # --- the spare: the next call's process, forked ahead of time ----------------------------

    def _fork_spare(self) -> _Spare:
        """Fork a child that does everything a call needs but the request, then waits for it."""
        # Only the server's ends are non-blocking: O_NONBLOCK on a write end would make the
        # code's print() fail with EAGAIN when the pipe is full.
        ctl_r, ctl_w = os.pipe2(os.O_CLOEXEC)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        tag_r, tag_w = os.pipe2(os.O_CLOEXEC)
        img_r, img_w = os.pipe2(os.O_CLOEXEC)
        for fd in (ctl_w, out_r, err_r, tag_r, img_r):
            os.set_blocking(fd, False)
        _protocol.grow_pipe(img_r)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            try:
                for fd in (ctl_w, out_r, err_r, tag_r, img_r):
                    os.close(fd)
                self._run_spare(ctl_r, (out_w, err_w), tag_w, img_w)
            finally:
                os._exit(_EXIT_SETUP_FAILED)
        for fd in (ctl_r, out_w, err_w, tag_w, img_w):
            os.close(fd)
        return _Spare(pid, ctl_w, out_r, err_r, tag_r, img_r)

    def _run_spare(self, ctl: int, outs: tuple[int, int], tag_w: int, img_w: int) -> NoReturn:
        """Child side: prepare, wait for the request, confine, run the code, exit."""
        rc = _EXIT_SETUP_FAILED
        try:
            self._prepare_child(outs, keep=[ctl, tag_w, img_w])
            try:
                code, lim, job, written, deadline, nproc_base = _receive_request(ctl)
            except EOFError:
                rc = 0  # the server shut down before a request came
                return
            os.close(ctl)
            self._confine(lim, job, nproc_base)
            os.write(tag_w, b"C")  # confined: from here on only untrusted code runs
            rc = 1  # if even our reporting below is interrupted, it is the code's error
            rc = _run_untrusted(code, tag_w)
            _emit_own_images(img_w, job, written, lim, deadline)
        finally:
            os._exit(rc)

    def _start_call(self, code: memoryview, lim: dict, job: str, written: dict, wall: float):
        """Hand the request to the spare; returns it and the call's start time.

        A spare that died while waiting (or does not read) is replaced by a fresh fork, so
        the call never fails because of it. The wall clock starts at the hand-over.
        """
        for _ in range(2):
            child, self.spare = self.spare, None
            if child is None or not child.alive():
                if child is not None:
                    child.discard()
                child = self._fork_spare()
            started = time.monotonic()
            request = marshal.dumps(
                (len(code), lim, job, written, started + wall, self._nproc_base(child.pid))
            )
            try:
                # Both sides set the group (the child again after reading), so the server's
                # killpg() can never miss the call, however soon it comes.
                os.setpgid(child.pid, child.pid)
                child.hand_over(request, code)
                return child, started
            except (OSError, TimeoutError):
                child.discard()
        raise RuntimeError("a freshly forked child did not take its request")

    def _nproc_base(self, spare_pid: int) -> int:
        """Tasks of our uid that the call's RLIMIT_NPROC must allow besides its own."""
        if self.level == "process" and not self.cfg.get("drop_to"):
            # Same uid as the (non-root) host: RLIMIT_NPROC counts all of the user's tasks,
            # which change over time, so count them again before each call. The spare is
            # the call's own first task, which the call's ``nproc`` already includes.
            self.nproc_base = _count_tasks(os.getuid(), skip=spare_pid)
        return self.nproc_base

    def _wipe(self) -> bool:
        """Make the work area what it was at start again (see ``_cleanup``); True if clean."""
        return _cleanup.wipe(self.workdir, self.baseline, _WIPE_BUDGET_S)

    def _prepare_child(self, outs: tuple[int, int], keep: list[int]) -> None:
        """Child side, before the request: what does not depend on it."""
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # a spare must not outlive the server
        if os.getppid() != self.pid:
            os._exit(_EXIT_SETUP_FAILED)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(outs[0], 1)
        os.dup2(outs[1], 2)
        _close_all_but(sorted({0, 1, 2, *keep, *self.keep_fds}))
        _keep_freed_memory()
        if self.landlock_abi:  # here, off the caller's clock: it needs nothing from the request
            _landlock.confine([self.workdir], [os.devnull], self.landlock_abi, self.readable)

    def _confine(self, lim: dict, job: str, nproc_base: int) -> None:
        """Child side, after the request: the limits and confinement of this call."""
        os.setpgid(0, 0)
        cpu = math.ceil(lim["cpu_s"])
        for res, value in (
            (resource.RLIMIT_CPU, (cpu, cpu + 1)),  # SIGXCPU at cpu s, SIGKILL one second later
            (resource.RLIMIT_AS, lim["memory_bytes"]),
            (resource.RLIMIT_FSIZE, lim["fsize_bytes"]),
            (resource.RLIMIT_NOFILE, lim["nofile"]),
            (resource.RLIMIT_NPROC, nproc_base + lim["nproc"]),
            (resource.RLIMIT_CORE, 0),
        ):
            resource.setrlimit(res, value if isinstance(value, tuple) else (value, value))
        os.chdir(job)
        os.environ.clear()
        os.environ.update(self.base_env, HOME=job, TMPDIR=job, PWD=job)
        _seccomp.install(self.prog, self.prog_offsets)

    def _watch(self, pid: int, streams: dict, deadline: float) -> bool:
        """Collect output until the child exits (True if the deadline passed first)."""
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = None
        poller = select.poll()
        for fd in streams:
            poller.register(fd, select.POLLIN)
        if pidfd is not None:
            poller.register(pidfd, select.POLLIN)
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return True
                timeout = remaining if pidfd is not None else min(remaining, 0.005)
                for fd, _ in poller.poll(max(1, math.ceil(timeout * 1000))):
                    if fd in streams:
                        try:
                            if not streams[fd].read_from(fd):
                                poller.unregister(fd)
                        except BlockingIOError:
                            continue
                    elif fd == pidfd:
                        return False
                if pidfd is None and os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                    return False
        finally:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            if pidfd is not None:
                os.close(pidfd)

    def _sweep(self, pgid: int, budget_s: float = 3.0) -> bool:
        """Kill and reap every process the call left behind; False if some survive.

        seccomp forbids setsid/setpgid, so every descendant is still in the call's process
        group, and orphans are re-parented to us (a subreaper). In the ``bwrap`` level the
        pid namespace is also listed: anything but pid 1 (bwrap's init) and us must go.
        """
        end = time.monotonic() + budget_s
        while True:
            try:
                os.killpg(pgid, signal.SIGKILL)
                group_alive = True
            except ProcessLookupError:
                group_alive = False
            except PermissionError:
                group_alive = True
            others = []
            if self.level == "bwrap":
                others = [
                    int(p)
                    for p in os.listdir("/proc")
                    if p.isdigit() and int(p) not in (1, self.pid)
                ]
                for p in others:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except OSError:
                        pass
            reaped_any = False
            while True:
                try:
                    child, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if child == 0:
                    break
                reaped_any = True
            if not group_alive and not others and not _has_children():
                return True
            if time.monotonic() > end:
                return False
            if not reaped_any:
                time.sleep(0.001)

    # --- outputs ----------------------------------------------------------------------------

    def _collect_images(self, job: str, written: dict, lim: dict, wall: float, own: _Sink):
        """The image files the code created or changed, decoded and validated.

        Fast path: the call's own (confined) child decoded them after the code finished and
        streamed them back. Whatever it did not deliver cleanly (it crashed, timed out, ran
        out of memory, or sent something malformed) is decoded by a fresh confined child.
        Either way the frames are untrusted and checked here.
        """
        names, errors = _image_candidates(job, written)
        if not names:
            return [], errors
        decoded, failed = {}, {}
        if not own.dropped:
            decoded, failed = _parse_images(own.view(), names, lim)
        missing = [n for n in names if n not in decoded and n not in failed]
        if missing:
            more, more_failed = self._decode_in_child(job, missing, lim, max(2.0, wall))
            decoded.update(more)
            failed.update(more_failed)
            for n in missing:
                if n not in more and n not in more_failed:
                    failed[n] = "decoding it failed"
        for n in names:
            if n in failed:
                errors.append(f"image {n!r} was not returned: {failed[n][:300]}")
        return [(n, decoded[n]) for n in names if n in decoded], errors

    def _decode_in_child(self, job: str, names: list, lim: dict, wall: float):
        """Decode ``names`` in a fresh child with the call's limits and seccomp."""
        r, w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            try:
                os.close(r)
                os.setpgid(0, 0)
                _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                _close_all_but(sorted({0, 1, 2, w, *self.keep_fds}))
                cpu = math.ceil(lim["cpu_s"])
                resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
                resource.setrlimit(resource.RLIMIT_AS, (lim["memory_bytes"],) * 2)
                resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
                if self.landlock_abi:
                    _landlock.confine([], [], self.landlock_abi, self.readable)
                _seccomp.install(self.prog, self.prog_offsets)
                _emit_images(w, job, names, lim)
            finally:
                os._exit(0)
        os.close(w)
        os.set_blocking(r, False)
        buf = _Sink()
        buf.reset(lim["max_result_bytes"] + 4096 * (_protocol.MAX_IMAGES + 1))
        timed_out = self._watch(pid, {r: buf}, time.monotonic() + wall)
        os.waitpid(pid, 0)
        _drain(r, buf)
        os.close(r)
        if timed_out:
            return {}, {n: "decoding it took too long" for n in names}
        if buf.dropped:
            return {}, {n: "the decoded images are too large" for n in names}
        return _parse_images(buf.view(), names, lim)


def _image_candidates(job: str, written: dict) -> tuple[list[str], list[str]]:
    """Image files in ``job`` that the code created or changed (not untouched inputs)."""
    names, errors, unusable = [], [], []
    try:
        with os.scandir(job) as it:
            for i, e in enumerate(it):
                if i >= _MAX_LISTED or not _protocol.is_image_name(e.name):
                    continue
                try:
                    _protocol.check_file_name(e.name)
                except ValueError:
                    unusable.append(e.name)
                    continue
                if not e.is_file(follow_symlinks=False):
                    continue
                st = e.stat(follow_symlinks=False)
                if written.get(e.name) == (st.st_ino, st.st_size, st.st_mtime_ns):
                    continue  # an input file the code left unchanged
                names.append(e.name)
    except OSError as e:
        return [], [f"could not list the work dir: {e.strerror}"]
    if unusable:  # one bounded line, however many there are
        shown = ", ".join(f"{n!r:.60}" for n in sorted(unusable)[:3])
        more = f" and {len(unusable) - 3} more" if len(unusable) > 3 else ""
        errors.append(f"skipped image files with unusable names: {shown}{more}")
    names.sort()
    if len(names) > _protocol.MAX_IMAGES:
        errors.append(
            f"{len(names)} image files were written; only the first "
            f"{_protocol.MAX_IMAGES} by name are returned"
        )
        names = names[: _protocol.MAX_IMAGES]
    return names, errors


def _emit_images(fd: int, job: str, names: list, lim: dict) -> None:
    """Decode ``names`` (files in ``job``) and write them to ``fd`` as frames + pixels.

    In the call's own child, images the code saved losslessly need no decoding (see
    ``_imageio.ImwriteLog``); the server's log is empty, so its fallback child decodes all.
    """
    budget = lim["max_result_bytes"]
    for name in names:
        try:
            a = _imageio.read_image_file(os.path.join(job, name), lim["max_image_side"])
        except ValueError as e:
            _protocol.write_all(fd, _protocol.pack_frame({"name": name, "error": str(e)[:300]}))
            continue
        if a.nbytes > budget:
            msg = f"the decoded images exceed max_result_bytes={lim['max_result_bytes']}"
            _protocol.write_all(fd, _protocol.pack_frame({"name": name, "error": msg}))
            continue
        budget -= a.nbytes
        head = _protocol.pack_frame({"name": name, "shape": list(a.shape)})
        _protocol.write_all(fd, head, memoryview(a).cast("B"))
    _protocol.write_all(fd, _protocol.pack_frame({"end": True}))


def _emit_own_images(fd: int, job: str, written: dict, lim: dict, deadline: float) -> None:
    """Child side, after the code: decode its images here and save the server a fork.

    Best effort: skipped when little time or CPU is left, and any failure just leaves the
    images to the server's fallback decoder.
    """
    try:
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        if time.monotonic() > deadline - 1.0 or cpu.ru_utime + cpu.ru_stime > lim["cpu_s"] - 1.0:
            return
        names, _ = _image_candidates(job, written)
        if names:
            _emit_images(fd, job, names, lim)
    except BaseException:
        pass


def _parse_images(data: memoryview, names: list, lim: dict) -> tuple[dict, dict]:
    """Validate image frames from an untrusted decoder: ``({name: array}, {name: error})``.

    Stops at the first malformed frame; frames after it are ignored.
    """
    import numpy as np

    images, errors = {}, {}
    budget = lim["max_result_bytes"]
    side = lim["max_image_side"]
    pos = 0
    try:
        while pos + 4 <= len(data):
            n = _protocol.frame_length(bytes(data[pos : pos + 4]))
            f = _protocol.parse_frame(bytes(data[pos + 4 : pos + 4 + n]))
            pos += 4 + n
            if f.get("end") is True:
                break
            name = f.get("name")
            if name not in names or name in images or name in errors:
                break
            if "error" in f:
                errors[name] = str(f["error"])[:300]
                continue
            shape = f.get("shape")
            if (
                not isinstance(shape, list)
                or len(shape) != 3
                or not all(type(x) is int for x in shape)
                or shape[2] != 3
                or not (1 <= shape[0] <= side and 1 <= shape[1] <= side)
            ):
                break
            size = shape[0] * shape[1] * 3
            if size > budget or pos + size > len(data):
                break
            budget -= size
            images[name] = np.frombuffer(data, np.uint8, size, pos).reshape(shape)
            pos += size
    except _protocol.ProtocolError:
        pass
    return images, errors


def _keep_freed_memory() -> None:
    """Child side: let glibc reuse freed memory instead of giving it back to the kernel.

    Image code allocates and frees buffers of hundreds of KiB over and over. By default
    glibc serves each from a fresh mmap (or trims the heap on free), so every buffer costs a
    page fault per 4 KiB again; how often depends on what the server happened to free
    before the fork. These fixed thresholds (glibc's own dynamic maximum for mmap) keep a
    short-lived call's heap pages for reuse; RLIMIT_AS bounds it exactly as before.
    """
    _libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    _libc.mallopt(_M_TRIM_THRESHOLD, 64 << 20)


def _has_children() -> bool:
    try:
        tid = os.getpid()
        with open(f"/proc/self/task/{tid}/children") as f:
            return bool(f.read().strip())
    except OSError:
        return False


def _close_all_but(keep: list[int]) -> None:
    lo = 0
    for fd in keep:
        if fd > lo:
            os.closerange(lo, fd)
        lo = fd + 1
    os.closerange(lo, 1 << 20)


def _drain(fd: int, buf: _Sink) -> None:
    """Read what is left in a pipe without waiting for writers that might not exist."""
    for _ in range(1024):
        try:
            if not buf.read_from(fd):
                return
        except OSError:
            return


def _quiet_signals() -> None:
    """Stop the code's timers and Python signal handlers so they cannot interrupt reporting."""
    for _ in range(100):
        try:
            for which in (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF):
                signal.setitimer(which, 0)
            for sig in signal.valid_signals():
                if callable(signal.getsignal(sig)) and sig not in (signal.SIGKILL, signal.SIGSTOP):
                    signal.signal(sig, signal.SIG_DFL)
            return
        except BaseException:
            continue


def _without_own_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    """``tb`` without the frames of the sandbox's ``cv2.imwrite`` wrapper, so an error in
    ``cv2.imwrite`` reads exactly as it does outside the sandbox."""
    kept = []
    while tb is not None:
        if tb.tb_frame.f_code.co_filename != _imageio.__file__:
            kept.append(tb)
        tb = tb.tb_next
    out = None
    for t in reversed(kept):
        out = types.TracebackType(out, t.tb_frame, t.tb_lasti, t.tb_lineno)
    return out


def _run_untrusted(code: bytes, tag_fd: int) -> int:
    """Run the code as ``__main__`` and return the process exit code (child side)."""
    sys.stdout = io.TextIOWrapper(
        io.FileIO(1, "w", closefd=False),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False),
        encoding="utf-8",
        errors="backslashreplace",
        write_through=True,
    )
    sys.argv = ["<code>"]
    rc = 0
    try:
        source = code.decode("utf-8", "surrogatepass")
        compiled = compile(source, "<code>", "exec", dont_inherit=True)
        exec(compiled, {"__name__": "__main__", "__builtins__": builtins})
        _quiet_signals()
    except SystemExit as e:
        _quiet_signals()
        if e.code is None:
            rc = 0
        elif isinstance(e.code, int):
            rc = e.code & 0xFF
        else:
            try:
                print(e.code, file=sys.stderr)
            except BaseException:
                pass
            rc = 1
    except BaseException as e:
        _quiet_signals()
        rc = 1
        try:
            tag = _classify_exception(e)
            if tag:
                os.write(tag_fd, tag + b"\n")
        except BaseException:
            pass
        try:
            tb = e.__traceback__.tb_next if e.__traceback__ is not None else None
            traceback.print_exception(type(e), e, _without_own_frames(tb), file=sys.stderr)
        except BaseException:
            try:
                os.write(2, f"{type(e).__name__}\n".encode())
            except BaseException:
                pass
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:
            pass
    return rc


def main() -> None:
    req_fd, resp_fd = int(sys.argv[1]), int(sys.argv[2])
    cfg = _protocol.read_frame(req_fd)
    server = Server(cfg, req_fd, resp_fd)
    server.start()
    server.serve()


if __name__ == "__main__":
    main()
