"""Fork-server that runs untrusted Python, one per sandbox worker. Trusted code.

Started by the host (``sandbox.py``) as ``python -I -B worker.py REQ_FD RESP_FD``: inside
bubblewrap for the ``bwrap`` level, as a plain process for the ``process`` level. It imports
numpy, cv2 and PIL once, drops what it must, and then forks its **template**: a process that
from then on does nothing but fork the calls' processes (``_worker_child``). Between calls
the template keeps one *spare* ready for the server: the next call's process, already
forked, with its pipes, fds, Landlock domain and seccomp filter set up, waiting on a control
pipe. Then, for
every request the server

1. writes the input files into a fresh work dir,
2. hands the request to the spare (asking for a fresh one if the spare died or stopped),
   which is under seccomp and Landlock already, sets rlimits, clears the environment and
   ``exec()``s the code; afterwards the same process decodes the image files the code wrote,
3. reads the pipes until *that process itself* exits or the wall-clock deadline passes (never
   until pipe EOF: an orphaned grandchild may hold the pipe open forever),
4. kills the call's process group, sweeps and reaps every remaining process (orphans come
   back to the server, a child subreaper; the template reaps the call's own process),
5. validates the decoded images; those the child did not deliver (it crashed, timed out, or
   sent garbage) are decoded by another confined child,
6. deletes everything the call wrote and puts back the mode bits and extended attributes of
   the work area (``_cleanup``: iterative, fd-relative, bounded in time; never raises),
   takes from the template how the call's process ended, and answers with one frame plus
   raw payloads. A failure after the call started still answers it, as ``bad_result`` with
   one short line and the call's own output; never with a traceback.

What the caller waits for is kept short: the next spare is asked for as soon as the call's
code is done (the process says so on its report pipe, before it returns its images and
exits), so that the template's fork and the spare's warm-up overlap steps 3 to 6 and the
caller's next request; and the server asks the template how the call ended only in step 6,
so it never waits for the template to be scheduled in between (step 4 in ``bwrap`` needs no
reaped process, see ``_sweep``).

**No residue through memory.** A forked process inherits its parent's whole memory, freed
heap included. Every call's process is forked from the template, which was forked from the
server before the first call and has never held a byte of any call: not its code, inputs,
stdout or pixels, and not the names it chose for files, image files and xattrs or the texts
of its image errors, all of which pass through the server's ordinary Python objects. So the
next call (and the next episode) cannot find an earlier call in memory it inherits, whatever
the server did with it. The alternatives were weaker or broke other promises: scrubbing the
server's heap cannot reach every copy the interpreter makes, a walk that keeps names out of
Python objects would have to cover every path that meets them (listing, cleanup, frames,
error texts) and stay that way, and making the server bwrap's pid 1 would change what the
pid namespace shows. The server's I/O buffers are still left out of every fork
(``_worker_io.unshared``), now only so that refilling them never costs a page copy.

The template (pid 3 in bwrap's pid namespace, after bwrap's init and the server) is a child
of the server in the server's process group; it dies with the server (``PDEATHSIG``) and
every child of it dies with it. Code cannot signal, trace or read it: seccomp and Landlock
allow signals only within the call, ptrace nowhere, and the server and the template are not
dumpable.
"""

from __future__ import annotations

import marshal
import math
import os
import select
import signal
import socket
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _cleanup  # noqa: E402
import _imageio  # noqa: E402
import _landlock  # noqa: E402
import _protocol  # noqa: E402
import _seccomp  # noqa: E402
import _worker_child  # noqa: E402
import _worker_os as wos  # noqa: E402
from _worker_io import Sink, drain, unshared  # noqa: E402

_WIPE_BUDGET_S = 10.0  # a work area not clean by then is given up with its worker
_TAGS = ("memory", "fsize", "disk", "nofile", "nproc")  # what a dying call may report
_HAND_OVER_S = 2.0  # a live spare reads its request at once; one that does not is replaced
_TEMPLATE_S = 10.0  # the template answers at once; if it does not, the worker is given up


def classify_exit(
    wstatus: int, *, timed_out: bool, cpu_used: float, cpu_s: float, report: bytes
) -> tuple[str, int | None, int | None, str | None]:
    """How a call ended: ``(status, exit_code, signal, limit)``.

    ``wstatus`` is the call's process's wait status, ``cpu_used`` its CPU seconds, ``cpu_s``
    the call's CPU limit, ``report`` what the process wrote to its report pipe: ``C`` once it
    was confined, then the first line a dying process wrote (a resource tag; later lines, from
    forked children sharing the pipe, are ignored), then ``D`` once the code is done (which
    only tells the server when to fork the next call's process). The code can write anything
    there; it is only matched against the known tags. ``limit == "setup"`` means the process
    was never confined (it never ran the code): the worker must not be trusted again.
    """
    if timed_out:
        return "timeout", None, None, "wall"
    if os.WIFSIGNALED(wstatus):
        sig = os.WTERMSIG(wstatus)
        cpu_soft = math.ceil(cpu_s)
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_used >= cpu_soft - 0.05):
            return "killed", None, sig, "cpu"
        if sig == signal.SIGXFSZ:
            return "killed", None, sig, "fsize"
        return "signal", None, sig, None
    exit_code = os.WEXITSTATUS(wstatus)
    if report[:1] != b"C":
        return "killed", exit_code, None, "setup"
    if exit_code == 0:
        return "ok", 0, None, None
    tag = next((t for t in _TAGS if report[1 : len(t) + 2] == f"{t}\n".encode()), None)
    if tag:
        return "killed", exit_code, None, tag
    return "error", exit_code, None, None


class _Child:
    """The server's end of a child the template forked: its pid (once the template said it),
    a pidfd, and the control, stdout, stderr, report and image pipes."""

    def __init__(self, ctl: int, out: int, err: int, tag: int, img: int) -> None:
        self.ctl, self.out, self.err, self.tag, self.img = ctl, out, err, tag, img
        self.pid: int | None = None
        self.pidfd = -1
        self.ended = False  # the template reported its exit
        self.exit: tuple[int, float] | None = None  # (wait status, CPU seconds), once reported

    def exited(self) -> bool:
        if self.ended:
            return True
        if self.pidfd < 0:  # no pidfds on this kernel
            return wos.process_state(self.pid) in ("", "Z", "X")
        return bool(select.select([self.pidfd], [], [], 0)[0])

    def alive(self) -> bool:
        """False if it died or was stopped while waiting (e.g. signalled from outside)."""
        return not self.exited() and wos.process_state(self.pid) not in ("", "T", "t", "Z", "X")

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

    def close(self) -> None:
        for fd in (self.ctl, self.out, self.err, self.tag, self.img, self.pidfd):
            if fd >= 0:
                os.close(fd)
        self.ctl = self.out = self.err = self.tag = self.img = self.pidfd = -1


class _Template:
    """The server's end of the template: ask for children, learn how they ended."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid, self.sock = pid, sock
        self._pending: list[_Child] = []  # asked for, pid not yet known; answered in order
        self._ends: dict[int, tuple[int, float]] = {}  # pid -> (wait status, CPU seconds)

    def spawn(self) -> _Child:
        """Ask for a child (answered later; see :meth:`claim`)."""
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
        theirs = [ctl_r, out_w, err_w, tag_w, img_w]
        child = _Child(ctl_w, out_r, err_r, tag_r, img_r)
        try:
            socket.send_fds(self.sock, [b"S"], theirs)
        except OSError:
            child.close()
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        self._pending.append(child)
        return child

    def claim(self, child: _Child) -> None:
        """Wait until the template has forked ``child``."""
        deadline = time.monotonic() + _TEMPLATE_S
        while child.pid is None:
            self._receive(deadline)
        if child.pid <= 0:
            raise OSError(-child.pid, "the template could not fork")

    def wait(self, child: _Child) -> tuple[int, float]:
        """``child``'s wait status and CPU seconds, once the template reaped it."""
        if child.exit is None:
            deadline = time.monotonic() + _TEMPLATE_S
            while child.pid not in self._ends:
                self._receive(deadline)
            child.ended = True
            child.exit = self._ends.pop(child.pid)
        return child.exit

    def discard(self, child: _Child) -> None:
        """Kill ``child`` (it never received a request, or it is done) and close our ends."""
        try:
            self.claim(child)
            if not child.ended:
                if child.pidfd >= 0:
                    try:
                        signal.pidfd_send_signal(child.pidfd, signal.SIGKILL)
                    except OSError:
                        pass
                else:
                    os.killpg(child.pid, signal.SIGKILL)  # its own group, made by the template
                self.wait(child)
        except OSError:
            pass
        finally:
            child.close()

    def _receive(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([self.sock], [], [], remaining)[0]:
            raise TimeoutError("the template did not answer")
        data = self.sock.recv(256)
        if not data:
            raise RuntimeError("the template died")
        msg = marshal.loads(data)
        if msg[0] == "pid":
            child = self._pending.pop(0)
            child.pid = msg[1]
            if child.pid <= 0:
                child.ended = True
                return
            try:
                child.pidfd = os.pidfd_open(child.pid)
            except (AttributeError, OSError):
                child.pidfd = -1
        elif msg[0] == "exit":
            self._ends[msg[1]] = (msg[2], msg[3])


class Server:
    """The fork-server loop; see the module docstring."""

    def __init__(self, cfg: dict, req_fd: int, resp_fd: int) -> None:
        self.cfg = cfg
        self.req_fd = req_fd
        self.resp_fd = resp_fd
        self.level = cfg["level"]
        self.workdir = cfg["workdir"]
        self.calls = 0
        self.pid = os.getpid()
        self._inbuf = unshared(0)
        self._scratch: dict = {}
        self._image_sink = Sink()
        self._out, self._err = Sink(), Sink()
        self._junk = Sink()
        self._report = Sink()
        self._codebuf = unshared(0)
        self.spare: _Child | None = None
        self.template: _Template | None = None
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
        keep_fds: list[int] = []
        candidates = self.cfg.get("drop_to")
        if candidates:
            keep_fds = wos.expose_import_paths()
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
            wos.prctl(wos.PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != self.cfg["parent_pid"]:
                os._exit(1)
        wos.prctl(wos.PR_SET_DUMPABLE, 0)
        wos.prctl(wos.PR_SET_CHILD_SUBREAPER, 1)
        # What the writable work area holds before any call (for bwrap: mount points of
        # binds that live under /tmp). After every call everything else is deleted and the
        # mode bits and extended attributes of what stays are put back, so nothing a call
        # writes, inside or outside its own work dir, is seen by the next call.
        self.baseline = _cleanup.snapshot(self.workdir)
        # Every call gets a Landlock domain where the kernel has one (signal scope, no ptrace
        # of bwrap's pid 1 or of us); the process level, without mounts, also confines reads.
        landlock_abi = _landlock.abi_version()
        prog = bytes.fromhex(self.cfg["seccomp"])
        child_cfg = _worker_child.ChildConfig(
            workdir=self.workdir,
            base_env=dict(self.cfg["env"]),
            prog=prog,
            prog_offsets=_seccomp.placeholder_offsets(prog),
            landlock_abi=landlock_abi,
            readable=_landlock.readable_roots() if self.level == "process" else None,
            keep_fds=keep_fds,
            huge_pages=bool(self.cfg.get("huge_pages")),
        )
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        self.template = self._fork_template(child_cfg)
        self.nproc_base = wos.count_tasks(os.getuid())  # the template included
        _protocol.write_all(
            self.resp_fd,
            _protocol.pack_frame(
                {
                    "ev": "ready",
                    "pid": os.getpid(),
                    "uid": os.getuid(),
                    "nproc_base": self.nproc_base,
                    "landlock": landlock_abi,
                    "versions": {
                        "python": sys.version.split()[0],
                        "numpy": numpy.__version__,
                        "cv2": cv2.__version__,
                        "PIL": PIL.__version__,
                    },
                }
            ),
        )

    def _fork_template(self, child_cfg: _worker_child.ChildConfig) -> _Template:
        """Fork the template now, before any call's byte has entered this process."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the template
            try:
                ours.close()
                os.close(self.req_fd)
                os.close(self.resp_fd)
                _worker_child.run_template(theirs, child_cfg, self.pid)
            finally:
                os._exit(1)
        theirs.close()
        return _Template(pid, ours)

    def serve(self) -> None:
        try:
            self._serve()
        finally:
            if self.spare is not None:  # PDEATHSIG would kill it too; do not leave it to that
                try:
                    self.template.discard(self.spare)
                except (OSError, RuntimeError, TimeoutError):
                    pass

    def _serve(self) -> None:
        while True:
            # The previous call is fully finished (swept, wiped, answered): have the next
            # call's process forked now, while the host is busy with the answer.
            if self.spare is None:
                self.spare = self.template.spawn()
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
        inputs = self._write_inputs(req)
        if inputs is None:
            return
        code, job, written = inputs
        lim, wall = req["limits"], float(req["wall_s"])
        run = self._run(req["id"], code, lim, wall, job, written)
        self._answer(req["id"], run, lim, wall, job, written)

    def _write_inputs(self, req: dict):
        """Read the code and the input files; write the files into a fresh work dir.

        Returns ``(code, job, written)``, or None when the call was rejected (answered)."""
        import numpy as np

        # The code goes into a buffer kept across calls and left out of every fork.
        if len(self._codebuf) < req["code_len"]:
            self._codebuf = unshared(req["code_len"])
        code = memoryview(self._codebuf)[: req["code_len"]]
        _protocol.read_into(self.req_fd, code)
        # File payloads land in a buffer kept across calls: fresh memory costs a page fault
        # per 4 KiB, which is most of the cost of moving an image.
        total = sum(f["len"] for f in req["files"])
        if len(self._inbuf) < total:
            self._inbuf = unshared(total)
        _protocol.read_into(self.req_fd, memoryview(self._inbuf)[:total])

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
                        fh.write(_imageio.bmp_rows(arr, self._scratch, unshared))
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
            return None
        return code, job, written

    def _run(self, call_id: int, code: memoryview, lim: dict, wall: float, job: str, written):
        """Run the call to its end and sweep up after it; returns what ``_answer`` needs."""
        child, started = self._start_call(code, lim, job, written, wall)
        _protocol.write_all(
            self.resp_fd,
            _protocol.pack_frame({"ev": "started", "id": call_id, "pid": child.pid}),
        )
        self._answering = call_id  # from here on a failure still answers this call

        out, err, report = self._out, self._err, self._report
        out.reset(lim["stdout_bytes"])
        err.reset(lim["stdout_bytes"])
        report.reset(64)
        own_images = self._image_sink
        own_images.reset(lim["max_result_bytes"] + 4096 * (_protocol.MAX_IMAGES + 1))
        streams = {child.out: out, child.err: err, child.img: own_images, child.tag: report}

        def code_done() -> None:
            # Anything after the "C" on the report pipe means the code has finished (its
            # process now returns images and exits): have the next call's process forked
            # now, so that its fork and warm-up overlap the rest of this call. Not earlier:
            # this call's RLIMIT_NPROC would count it, and the code would see it in /proc.
            # (The code can write there itself; then it only has itself to blame for both.)
            if self.spare is None and report.n + report.dropped > 1:
                self.spare = self.template.spawn()

        timed_out = self._watch(child, streams, started + wall, {child.tag: code_done})
        duration = time.monotonic() - started
        if self.spare is None:  # it ended without a word after the "C"
            self.spare = self.template.spawn()
        healthy = self._sweep(child)
        for fd, buf in streams.items():
            drain(fd, buf)
        child.close()
        return child, timed_out, duration, healthy

    def _answer(self, call_id: int, run: tuple, lim: dict, wall: float, job: str, written):
        """Collect the images, wipe the work area, learn how the call ended, answer."""
        child, timed_out, duration, healthy = run
        out, err = self._out, self._err
        try:
            images, image_errors = self._collect_images(job, written, lim, wall)
        except Exception as e:  # noqa: BLE001 - the call's own output still goes back
            images, healthy = [], False
            image_errors = [f"the images could not be collected ({type(e).__name__}: {e})"[:300]]
        if not self._wipe():
            healthy = False
        # The template reaped the call's process long ago (it woke when we did); asking only
        # now keeps its answer off the caller's clock.
        wstatus, cpu_used = self.template.wait(child)
        status, exit_code, sig, limit = classify_exit(
            wstatus,
            timed_out=timed_out,
            cpu_used=cpu_used,
            cpu_s=lim["cpu_s"],
            report=self._report.view(),
        )
        if limit == "setup":
            healthy = False  # confinement failed: never trust this worker again
        header = {
            "ev": "done",
            "id": call_id,
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

    # --- the call's process -----------------------------------------------------------------

    def _start_call(self, code: memoryview, lim: dict, job: str, written: dict, wall: float):
        """Hand the request to the spare; returns it and the call's start time.

        A spare that died or stopped while waiting (or does not read) is replaced by a fresh
        one, so the call never fails because of it. The wall clock starts at the hand-over.
        """
        for _ in range(2):
            child, self.spare = self.spare, None
            if child is None:
                child = self.template.spawn()
            try:
                self.template.claim(child)
                if not child.alive():
                    raise OSError("the spare is gone")
                started = time.monotonic()
                request = marshal.dumps(
                    (
                        "run",
                        len(code),
                        lim,
                        job,
                        written,
                        started + wall,
                        self._nproc_base(child.pid),
                    )
                )
                child.hand_over(request, code)
                return child, started
            except (OSError, TimeoutError):
                self.template.discard(child)
        raise RuntimeError("a freshly forked child did not take its request")

    def _nproc_base(self, spare_pid: int) -> int:
        """Tasks of our uid that the call's RLIMIT_NPROC must allow besides its own."""
        if self.level == "process" and not self.cfg.get("drop_to"):
            # Same uid as the (non-root) host: RLIMIT_NPROC counts all of the user's tasks,
            # which change over time, so count them again before each call. The spare is
            # the call's own first task, which the call's ``nproc`` already includes.
            self.nproc_base = wos.count_tasks(os.getuid(), skip=spare_pid)
        return self.nproc_base

    def _wipe(self) -> bool:
        """Make the work area what it was at start again (see ``_cleanup``); True if clean."""
        return _cleanup.wipe(self.workdir, self.baseline, _WIPE_BUDGET_S)

    def _watch(
        self, child: _Child, streams: dict, deadline: float, hooks: dict | None = None
    ) -> bool:
        """Collect output until the child exits (True if the deadline passed first).

        ``hooks`` maps some of the stream fds to a function called after each read from it."""
        hooks = hooks or {}
        poller = select.poll()
        for fd in streams:
            poller.register(fd, select.POLLIN)
        if child.pidfd >= 0:
            poller.register(child.pidfd, select.POLLIN)
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return True
                timeout = remaining if child.pidfd >= 0 else min(remaining, 0.005)
                for fd, _ in poller.poll(max(1, math.ceil(timeout * 1000))):
                    if fd in streams:
                        try:
                            if not streams[fd].read_from(fd):
                                poller.unregister(fd)
                        except BlockingIOError:
                            continue
                        if fd in hooks:
                            hooks[fd]()
                    elif fd == child.pidfd:
                        return False
                if child.pidfd < 0 and wos.process_state(child.pid) in ("", "Z", "X"):
                    return False
        finally:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except OSError:
                pass

    def _sweep(self, child: _Child, budget_s: float = 3.0) -> bool:
        """Kill and reap every process the call left behind; False if some survive.

        seccomp forbids setsid/setpgid, so every descendant is still in the call's process
        group, and orphans are re-parented to us (a subreaper). In the ``bwrap`` level the
        pid namespace is also listed: anything but pid 1 (bwrap's init), us, the template and
        the template's children must go.

        The call's own process may still be a zombie here, waiting for the template to reap
        it, and a zombie keeps its group alive for ``killpg``. In ``bwrap``, once that process
        has exited and nothing else is listed, the zombie is all the group holds (its other
        members cannot be the template's children), so nobody waits for the template; in
        ``process`` the template is asked first.
        """
        pgid = child.pid
        end = time.monotonic() + budget_s
        ours = (1, self.pid, self.template.pid)
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
                others = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in ours]
                # The next call's spare may be forked by now: a child of the template, which
                # nothing a call starts can be (its orphans come to us, the subreaper).
                others = [p for p in others if wos.parent_of(p) != self.template.pid]
                for p in others:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except OSError:
                        pass
                if not others and child.exited():
                    group_alive = False  # all that is left of it is its first process, a zombie
            elif group_alive and not child.ended:
                self.template.wait(child)
                continue
            reaped_any = False
            while True:
                try:
                    pid, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                if pid == self.template.pid:
                    return False  # the template died: this worker cannot go on
                reaped_any = True
            orphans = [p for p in wos.children() if p != self.template.pid]
            if not group_alive and not others and not orphans:
                return True
            if time.monotonic() > end:
                return False
            if not reaped_any:
                time.sleep(0.001)

    # --- outputs ----------------------------------------------------------------------------

    def _collect_images(self, job: str, written: dict, lim: dict, wall: float):
        """The image files the code created or changed, decoded and validated.

        Fast path: the call's own (confined) child decoded them after the code finished and
        streamed them back. Whatever it did not deliver cleanly (it crashed, timed out, ran
        out of memory, or sent something malformed) is decoded by a fresh confined child.
        Either way the frames are untrusted and checked here.
        """
        names, errors = _imageio.image_candidates(job, written)
        if not names:
            return [], errors
        own = self._image_sink
        decoded, failed = {}, {}
        if not own.dropped:
            decoded, failed = _imageio.parse_images(own.view(), names, lim)
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
        """Decode ``names`` in a fresh child of the template, with the call's limits."""
        child = self.template.spawn()
        try:
            self.template.claim(child)
            child.hand_over(marshal.dumps(("decode", 0, lim, job, names, 0.0, 0)), b"")
            buf = Sink()
            buf.reset(lim["max_result_bytes"] + 4096 * (_protocol.MAX_IMAGES + 1))
            self._junk.reset(0)
            streams = {child.img: buf, child.out: self._junk, child.err: self._junk}
            timed_out = self._watch(child, streams, time.monotonic() + wall)
            self.template.wait(child)
            drain(child.img, buf)
        finally:
            self.template.discard(child)
        if timed_out:
            return {}, {n: "decoding it took too long" for n in names}
        if buf.dropped:
            return {}, {n: "the decoded images are too large" for n in names}
        return _imageio.parse_images(buf.view(), names, lim)


def main() -> None:
    req_fd, resp_fd = int(sys.argv[1]), int(sys.argv[2])
    cfg = _protocol.read_frame(req_fd)
    server = Server(cfg, req_fd, resp_fd)
    server.start()
    server.serve()


if __name__ == "__main__":
    main()
