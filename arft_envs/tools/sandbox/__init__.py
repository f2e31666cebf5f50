"""Run model-written Python (numpy/OpenCV/PIL) in isolation, in a few milliseconds per call.

::

    from arft_envs.tools.sandbox import Sandbox, SandboxLimits

    with Sandbox(limits=SandboxLimits(cpu_s=5, wall_s=10)) as sb:
        res = sb.run(code, files={"path_to_input_image.jpg": rgb_array})
        res.status, res.stdout, res.images["path_to_output_image.jpg"]
        tool_message = res.describe()

Design (measured in ``shared/research/sandbox.md``): each worker is a long-lived fork-server
that has already imported numpy, cv2 and PIL, running inside bubblewrap; every call is one
``fork()`` (of the server's template, done ahead of the call), so a call costs milliseconds
instead of the ~140 ms of a fresh interpreter.

Which file runs where::

    host    __init__ sandbox _workers _inprocess _bwrap _launcher(as root, before bwrap)
            limits result errors
    both    _protocol _imageio _cleanup _seccomp (built on the host, loaded in each call)
    worker  worker (main, the fork-server loop, classify_exit)
            _worker_child (the template, and each call's process up to exec of the code)
            _worker_os (libc, prctl, fds, tasks)  _worker_io (capped buffers)  _landlock

Threat model
------------
The code is untrusted: early in RL training it is close to random, and a policy can learn to
exploit its environment. Each promise below names the mechanism that keeps it; the adversarial
tests are in ``tests/tools/test_sandbox_hostile*.py`` and
``test_sandbox_unprivileged.py`` (CI also runs those as an unprivileged host user).

What every call gets, at both isolating levels (``bwrap`` and ``process``):

* **rlimits**: CPU seconds, address space, file size, open files and processes per call, a
  wall-clock deadline that kills every process of the call, capped stdout/stderr;
* **seccomp** (``_seccomp``), by class of effect, each closed as a whole: no sockets; no
  ptrace, ``process_vm_*``, mounts, namespaces, keyrings, BPF, perf or io_uring; **signals
  only to itself** by every route (the kill family is self-only; ``pidfd_*``, ``tkill``,
  ``fcntl`` F_SETOWN/F_SETOWN_EX/F_SETSIG/F_SETLEASE/F_NOTIFY and the owner requests of
  ``ioctl`` are denied, so no file can signal anyone later); **no IPC object**: System V
  shared memory, message queues and semaphores, POSIX message queues and ``memfd`` (whose
  memory RLIMIT_AS does not count, and which outlive the call) are denied; **no file
  metadata change**: chmod/chown/utime/xattr/inode-flag calls fail with EPERM everywhere,
  work dir included (``shutil.copyfile`` works, ``shutil.copy`` does not); syscall numbers
  newer than the reviewed list fail with ENOSYS;
* **Landlock** (``_landlock``, where the kernel has it): writes only beneath the worker's work
  area (which holds nothing but the call's work dir) and to ``/dev/null``; no TCP; signals
  and abstract-socket connections only within the call (ABI 6 scopes); no ptrace-style
  access (``/proc/<pid>/mem``, ``environ``) to any process outside the call, whatever its uid;
* **nothing survives the call**: process-group kill plus a sweep; everything it wrote is
  deleted; it had no IPC objects to leave; it could not change metadata it did not create;
* **no earlier call in memory**: every call's process is forked from the worker's *template*,
  a process forked before the first call that never receives a call's bytes (code, inputs,
  output, pixels, or the names it gave files, images and xattrs and the image errors they
  caused); the fork-server, which handles all of those, is never a call's parent, so no
  earlier call, in this episode or another, is in memory the call inherits (``worker.py``);
* **a cleared environment** (PATH, LANG, HOME, TMPDIR, PWD and thread-count variables only);
* **the host is not fooled**: results come back as size-capped frames and raw uint8 arrays,
  validated on the host; nothing is unpickled; images are decoded inside the sandbox; a hung
  or dead worker is killed and replaced and the call reports it.

``bwrap`` (the default; ``auto`` means bwrap and never falls back) adds:

* **no host files**: a read-only ``/usr``, the interpreter's prefixes and this package, an
  empty size-capped ``/tmp`` holding the work dir, an empty ``/dev/shm`` of mode 0555 (which
  seccomp stops anyone from changing) and nothing else (no ``/home``, no ``/etc/shadow``, no
  repo); ``/``, ``/dev`` and ``/proc`` are read-only mounts;
* **no network**: an empty network namespace;
* **no host processes**: private pid, IPC, UTS and cgroup namespaces. The pid namespace holds
  only bwrap's pid 1 (the reaper), the fork-server (2), its template (3) and the call. Pid 1
  runs as the call's uid and is dumpable, so it is kept out of reach three ways: seccomp (no
  signal, no ptrace), Landlock (no ptrace-style access, no signal) and the read-only
  ``/proc`` (no write to ``/proc/1/mem`` even without Landlock). The fork-server and the
  template are not dumpable;
* **no privileges**: uid 65534, no capabilities, ``no_new_privs``, no nested user namespaces,
  and when the host is root the whole sandbox runs as host uid 65534 (the kernel ignores
  RLIMIT_NPROC for root).

``process`` (for machines where user namespaces are blocked; it warns loudly) has no mount,
pid or IPC namespace, so it relies on seccomp and Landlock alone, and promises less:

* **writes** are confined to the work dir by Landlock; without Landlock it refuses to start
  unless the host is root (then the worker runs as a private unprivileged uid that owns
  nothing but its work dir);
* **reads** are NOT confined: code reads every file its uid may read (on a non-root host: the
  user's files), except procfs and ``/dev``, which Landlock hides (the call keeps its own
  ``/proc/self``, ``/proc/cpuinfo``, ``/proc/meminfo`` and ``/dev/null``, ``zero``, ``full``,
  ``random``, ``urandom``): no host command line, status, environment or mount table, no
  terminal;
* **the user's own files** on a non-root host: the code runs as the user, so what protects
  them is seccomp (no metadata changes) and Landlock (no writes, truncation, renames or
  links); without Landlock ABI 3 a file could be truncated;
* **processes**: signals and ptrace as above (seccomp and, with ABI 6, the Landlock scope);
  the host process and the fork-server are reachable by pid but not signallable; when not
  root the process limit counts all of the user's tasks, so it is approximate; if the host is
  SIGKILLed mid-call, processes the call forked may outlive it.

``none`` is the reference paper's in-process ``exec``: no isolation whatsoever; opt-in, warns.

Not protected at any level: kernel exploits and hardware side channels (namespaces, seccomp
and Landlock share the host kernel; use a VM or gVisor around the worker for that threat);
kernel memory (pipe buffers, page tables) beyond what rlimits bound, since no cgroup is used;
total CPU when code forks (RLIMIT_CPU is per process; the wall deadline is the real bound);
code learning the host paths of the interpreter and venv or the kernel version; timing and
load side channels between concurrent calls; a reader of the code's output being confused by
what it prints. On kernels without Landlock the ``bwrap`` level loses the defence in depth
(scopes, ptrace bound) but keeps its mounts, namespaces and seccomp.
"""

from .errors import SandboxError, SandboxWarning
from .limits import SandboxLimits
from .result import ExecResult, Status
from .sandbox import Sandbox, get_default_sandbox

__all__ = [
    "ExecResult",
    "Sandbox",
    "SandboxError",
    "SandboxLimits",
    "SandboxWarning",
    "Status",
    "get_default_sandbox",
]
