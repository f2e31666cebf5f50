"""What runs outside the fork-server: its template and the calls' processes. Trusted code,
up to the moment it ``exec()``s the untrusted code.

The *template* is a child the fork-server forks once, before the first call (see
``worker.py``). It never touches a call's bytes: it only ever receives five pipe ends and
answers with pids and exit statuses. For every call (and for every fallback image decoder) it
forks one child, the *spare*, which

1. arms ``PDEATHSIG``, joins its own process group, points stdin/stdout/stderr at /dev/null
   and its capped pipes, closes every other fd, enters its Landlock domain, loads the
   seccomp filter (which names its own pid, known by now); then, until the request comes,
   faults in a fixed amount of heap for the code's first allocations (in huge pages where
   the host has them: fewer faults in all, not only fewer on the caller's clock) and warms
   up (does once what every call does after its request, so that the copy-on-write faults
   of those first touches are paid here, off the caller's clock);
2. waits for its request on a control pipe (the server writes it straight into that pipe, so
   the request reaches only this process);
3. sets the call's rlimits, clears the environment and ``exec()``s the code as ``__main__``;
   says on its report pipe that the code is done (the server then has the next spare
   forked); decodes the image files the code wrote and streams them back (best effort: the
   server has a fallback), and exits.

A decoding request instead confines the child further (no writes at all, no file size) and
decodes the named image files.
"""

from __future__ import annotations

import builtins
import errno
import gc
import io
import marshal
import math
import os
import resource
import select
import signal
import socket
import sys
import time
import traceback
import types
from typing import NamedTuple, NoReturn

import _imageio
import _landlock
import _protocol
import _seccomp
import _worker_os as wos

EXIT_SETUP_FAILED = 121  # the child could not be confined; it never ran the code


class ChildConfig(NamedTuple):
    """What every child needs, fixed when the server starts (copied into the template)."""

    workdir: str
    base_env: dict
    prog: bytes
    prog_offsets: list
    landlock_abi: int
    readable: list | None
    keep_fds: list
    huge_pages: bool  # the host's kernel backs MADV_HUGEPAGE ranges with huge pages


# --- the template -----------------------------------------------------------------------------


def run_template(sock: socket.socket, cfg: ChildConfig, server_pid: int) -> NoReturn:
    """The template's loop: one child per ``S`` message (whose five fds become the child's
    control, stdout, stderr, report and image pipes), answered ``("pid", pid)``; every child
    that ends is reaped here and reported as ``("exit", pid, wait status, CPU seconds)``.

    It dies with the server (``PDEATHSIG``, and EOF on ``sock``).

    Its memory is shared copy-on-write with the spare it forked, so every page it writes
    between two forks is copied once more. Hence no cyclic garbage collection here (a full
    collection writes to the header of every object: the whole heap, copied) and every
    object it has at start frozen, so that the children's collections skip them as well.
    """
    try:
        wos.prctl(wos.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != server_pid:
            os._exit(0)
        gc.disable()
        gc.collect()
        gc.freeze()
        wos.libc.malloc_trim(0)  # no free heap pages mapped: fewer to copy at each fork
        me = os.getpid()
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        pidfds: dict[int, int] = {}
        tick = None  # with a pidfd per child, every exit wakes us; without, look every 5 ms
        while True:
            events = poller.poll(tick)
            # Exits first: the server waits for an exit, never for a spare forked ahead, so a
            # request for one that came at the same time is answered after the report.
            _report_exits(sock)
            for fd, _ in events:
                if fd != sock.fileno():
                    poller.unregister(fd)
                    os.close(fd)
                    pidfds.pop(fd, None)
                    continue
                msg, fds, _, _ = socket.recv_fds(sock, 16, 8)
                if not msg:
                    os._exit(0)  # the server is gone
                pid = -errno.EINVAL
                if msg == b"S" and len(fds) == 5:
                    try:
                        pid = _spawn(cfg, fds, me)
                    except OSError as e:
                        pid = -(e.errno or errno.EAGAIN)
                for f in fds:
                    os.close(f)
                if pid > 0:
                    try:
                        pfd = os.pidfd_open(pid)
                        pidfds[pfd] = pid
                        poller.register(pfd, select.POLLIN)
                    except (AttributeError, OSError):
                        tick = 5
                sock.send(marshal.dumps(("pid", pid)))
            _report_exits(sock)
    except BaseException:
        pass
    finally:
        os._exit(0)


def _report_exits(sock: socket.socket) -> None:
    """Reap every child that has ended; send ``("exit", pid, wait status, CPU seconds)``."""
    while True:
        try:
            pid, status, ru = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        sock.send(marshal.dumps(("exit", pid, status, ru.ru_utime + ru.ru_stime)))


def _spawn(cfg: ChildConfig, fds: list[int], template_pid: int) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.setpgid(0, 0)  # both sides set it, so it is set before the server learns the pid
            run_child(cfg, template_pid, *fds)
        finally:
            os._exit(EXIT_SETUP_FAILED)
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass  # it already did (or died)
    return pid


# --- the child ----------------------------------------------------------------------------------


def run_child(
    cfg: ChildConfig, parent: int, ctl: int, out_w: int, err_w: int, tag_w: int, img_w: int
) -> NoReturn:
    """Prepare, wait for the request, confine, run the code (or decode), exit."""
    rc = EXIT_SETUP_FAILED
    try:
        wos.prctl(wos.PR_SET_PDEATHSIG, signal.SIGKILL)  # never outlive the template
        gc.enable()  # the code gets an ordinary interpreter (the template's objects frozen)
        if os.getppid() != parent:
            return
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        wos.close_all_but([0, 1, 2, ctl, tag_w, img_w, *cfg.keep_fds])
        wos.keep_freed_memory()
        # Landlock and seccomp here, off the caller's clock: they need nothing from the request
        # (the filter's own pid is known), and the request then reaches a confined process.
        if cfg.landlock_abi:
            _landlock.confine([cfg.workdir], [os.devnull], cfg.landlock_abi, cfg.readable)
        _seccomp.install(cfg.prog, cfg.prog_offsets)
        install_streams()
        request = select.poll()
        request.register(ctl, select.POLLIN)
        _fault_in_heap_until_request(request, cfg.huge_pages)
        if not request.poll(0):  # a request already here does not wait for the warm-up
            _warm_up(cfg)
        try:
            mode, code, lim, job, extra, deadline, nproc_base = _receive_request(ctl)
        except EOFError:
            rc = 0  # the server shut down (or discarded us) before a request came
            return
        os.close(ctl)
        if mode == "decode":
            _confine_decoder(cfg, lim)
            _imageio.emit_images(img_w, job, extra, lim)
            rc = 0
            return
        _confine(cfg, lim, job, nproc_base)
        os.write(tag_w, b"C")  # confined: from here on only untrusted code runs
        rc = 1  # if even our reporting below is interrupted, it is the code's error
        rc = run_untrusted(code, tag_w)
        try:
            os.write(tag_w, b"D")  # the code is done: the server has the next spare forked now
        except OSError:
            pass  # the code closed or replaced the fd; the server forks it when we exit
        emit_own_images(img_w, job, extra, lim, deadline)
    finally:
        os._exit(rc)


_LIMITED = (
    resource.RLIMIT_CPU,
    resource.RLIMIT_AS,
    resource.RLIMIT_FSIZE,
    resource.RLIMIT_NOFILE,
    resource.RLIMIT_NPROC,
    resource.RLIMIT_CORE,
)


def _warm_up(cfg: ChildConfig) -> None:
    """Before the request, do once what every call does after it.

    This process shares the template's memory copy-on-write, so the first write to each page
    (a reference count is enough) costs a fault and a page copy: here they are off the
    caller's clock (0.8 ms of CPU, measured; skipped when the request is already waiting,
    as the call then pays them as soon). Nothing here depends on the request or reads
    anything a call could have written (the work area is not listed).
    """
    for res in _LIMITED:
        resource.setrlimit(res, resource.getrlimit(res))
    os.chdir(cfg.workdir)
    os.environ.clear()
    os.environ.update(cfg.base_env)
    exec(compile("pass", "<code>", "exec", dont_inherit=True), {"__builtins__": builtins})
    for sig in signal.valid_signals():  # what quiet_signals() reads (it changes nothing yet)
        signal.getsignal(sig)
    resource.getrusage(resource.RUSAGE_SELF)
    marshal.loads(marshal.dumps(("run", 0, {"x": 1.0}, "", {"x": (0, 0, 0)}, 0.0, 0)))


#: Heap a spare faults in while it waits: about what a call that transforms a 512x512 image
#: allocates (input, intermediates, encoded output), which would otherwise cost it ~950 page
#: faults (1.2-1.7 ms of CPU, measured) on the caller's clock. Faulted in as transparent huge
#: pages where the kernel offers them: one fault and one 2 MiB clear per huge page instead
#: of 512 faults (4 MiB in 4 KiB pages cost the spare 1.6 ms of CPU, measured; in huge pages
#: ~0.3 ms), which matters when every core is busy and the CPU moved off the caller's clock
#: is still CPU. Faulted in steps, each after a look at the control pipe, so a request that
#: comes early waits for one step at most.
_HEAP_BYTES = 4 << 20
_HEAP_STEP = 256 << 10
_HUGE_PAGE = 2 << 20


def _fault_in_heap_until_request(request: select.poll, huge_pages: bool) -> None:
    """Before the request: fault in ``_HEAP_BYTES`` of heap, then hand them back to malloc,
    which keeps them (``keep_freed_memory``) for the code's first allocations.

    With huge pages (``huge_pages``: the host's THP setting is not ``never``) the block is
    two huge pages longer, so that ``_HEAP_BYTES`` of it, aligned and above what the heap had
    mapped (a 2 MiB range with any page mapped already cannot become a huge page), can be
    huge pages; malloc is then kept off the part below them. What is not faulted in by the
    time the request comes is faulted in by the code, still in huge pages (a fault that
    clears 2 MiB, ~0.1 ms, instead of 512 faults; but where the host's memory is fragmented
    and THP ``defrag`` is ``madvise``, the kernel may compact memory first). The amount is
    fixed: nothing about an earlier call reaches this process through it.
    """
    fresh = wos.libc.sbrk(0)  # the heap above this was never mapped (the template trimmed it)
    size = _HEAP_BYTES + 2 * _HUGE_PAGE
    block = wos.libc.malloc(size)
    if not block:
        return
    huge = (max(block, fresh) + _HUGE_PAGE - 1) & ~(_HUGE_PAGE - 1)
    fits = huge + _HEAP_BYTES <= block + size
    if huge_pages and fits and wos.advise_huge_pages(huge, _HEAP_BYTES):
        steps = [(a, _HUGE_PAGE) for a in range(huge, huge + _HEAP_BYTES, _HUGE_PAGE)]
    else:
        huge = 0
        start, end = (block + 4095) & ~4095, (block + _HEAP_BYTES) & ~4095
        steps = [(a, min(_HEAP_STEP, end - a)) for a in range(start, end, _HEAP_STEP)]
    try:
        for addr, n in steps:
            if request.poll(0):
                return  # the request is here
            wos.fault_in(addr, n)
    finally:
        if huge and huge - block >= 32:
            # Keep [block, huge) allocated (never faulted in) and give the rest back: glibc
            # shrinks in place, its chunk for n bytes being n + 8 rounded up to 16 and starting
            # 16 bytes before the pointer, so the freed rest starts exactly at ``huge``, where
            # the code's first allocations then come from.
            wos.libc.realloc(block, huge - block - 8)
        else:
            wos.libc.free(block)


def _receive_request(fd: int) -> tuple:
    """``(mode, code, lim, job, written or names, deadline, nproc_base)``; EOFError if the
    server closed the pipe."""
    n = int.from_bytes(_protocol.read_exact(fd, 8), "little")
    mode, code_len, *rest = marshal.loads(_protocol.read_exact(fd, n))
    return (mode, _protocol.read_exact(fd, code_len), *rest)


def _confine(cfg: ChildConfig, lim: dict, job: str, nproc_base: int) -> None:
    """After the request: the limits and confinement of this call."""
    cpu = math.ceil(lim["cpu_s"])
    for res, value in zip(
        _LIMITED,
        (
            (cpu, cpu + 1),  # SIGXCPU at cpu s, SIGKILL one second later
            lim["memory_bytes"],
            lim["fsize_bytes"],
            lim["nofile"],
            nproc_base + lim["nproc"],
            0,
        ),
        strict=True,
    ):
        resource.setrlimit(res, value if isinstance(value, tuple) else (value, value))
    os.chdir(job)
    os.environ.clear()
    os.environ.update(cfg.base_env, HOME=job, TMPDIR=job, PWD=job)


def _confine_decoder(cfg: ChildConfig, lim: dict) -> None:
    """A decoding child: the call's CPU and memory limits and no writes at all (seccomp is
    already loaded)."""
    cpu = math.ceil(lim["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (lim["memory_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if cfg.landlock_abi:  # a second domain on top of the first: no write anywhere
        _landlock.confine([], [], cfg.landlock_abi, cfg.readable)


def emit_own_images(fd: int, job: str, written: dict, lim: dict, deadline: float) -> None:
    """After the code: decode its images here and save the server a fork.

    Best effort: skipped when little time or CPU is left, and any failure just leaves the
    images to the server's fallback decoder.
    """
    try:
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        if time.monotonic() > deadline - 1.0 or cpu.ru_utime + cpu.ru_stime > lim["cpu_s"] - 1.0:
            return
        names, _ = _imageio.image_candidates(job, written)
        if names:
            _imageio.emit_images(fd, job, names, lim)
    except BaseException:
        pass


# --- running the untrusted code -----------------------------------------------------------------


def classify_exception(e: BaseException) -> bytes:
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


def quiet_signals() -> None:
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


def without_own_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
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


def install_streams() -> None:
    """``sys.stdout``/``sys.stderr`` over fds 1 and 2 (the capped pipes), as the code sees
    them outside the sandbox: UTF-8, stdout line-buffered, stderr unbuffered."""
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


def run_untrusted(code: bytes, tag_fd: int) -> int:
    """Run the code as ``__main__`` (streams installed) and return the process exit code."""
    sys.argv = ["<code>"]
    rc = 0
    try:
        source = code.decode("utf-8", "surrogatepass")
        compiled = compile(source, "<code>", "exec", dont_inherit=True)
        exec(compiled, {"__name__": "__main__", "__builtins__": builtins})
        quiet_signals()
    except SystemExit as e:
        quiet_signals()
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
        quiet_signals()
        rc = 1
        try:
            tag = classify_exception(e)
            if tag:
                os.write(tag_fd, tag + b"\n")
        except BaseException:
            pass
        try:
            tb = e.__traceback__.tb_next if e.__traceback__ is not None else None
            traceback.print_exception(type(e), e, without_own_frames(tb), file=sys.stderr)
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
