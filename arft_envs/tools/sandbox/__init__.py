"""Run model-written Python (numpy/OpenCV/PIL) in isolation, in a few milliseconds per call.

::

    from arft_envs.tools.sandbox import Sandbox, SandboxLimits

    with Sandbox(limits=SandboxLimits(cpu_s=5, wall_s=10)) as sb:
        res = sb.run(code, files={"path_to_input_image.jpg": rgb_array})
        res.status, res.stdout, res.images["path_to_output_image.jpg"]
        tool_message = res.describe()

Design (measured in ``shared/research/sandbox.md``): each worker is a long-lived fork-server
that has already imported numpy, cv2 and PIL, running inside bubblewrap; every call is one
``fork()``, so a call costs milliseconds instead of the ~140 ms of a fresh interpreter.

Threat model
------------
The code is untrusted: early in RL training it is close to random, and a policy can learn to
exploit its environment. The ``bwrap`` level is built so that such code cannot:

* read or write host files: it sees a read-only ``/usr``, the interpreter's prefixes and this
  package, an empty size-capped ``/tmp`` holding its work dir, and nothing else (no ``/home``,
  no ``/etc/shadow``, no repo, no secrets); ``/`` and ``/dev`` are read-only;
* reach the network: an empty network namespace, and ``socket()`` fails (seccomp);
* see or signal host processes: a private pid namespace, and ``kill`` works only on itself;
* see host secrets in the environment: the environment is cleared;
* gain privileges: uid 65534, no capabilities, ``no_new_privs``, no nested user namespaces,
  no ptrace/mount/unshare/bpf/keyctl/io_uring (seccomp), and when the host is root the whole
  sandbox runs as host uid 65534 (the kernel ignores RLIMIT_NPROC for root);
* exhaust the host: CPU time, address space, file size, open files and process count are
  limited per call, output is capped, the work dir is a size-capped tmpfs, and a wall-clock
  deadline kills every process of the call; nothing survives a call (process-group kill plus a
  pid-namespace sweep), so no call can affect the next one;
* fool the host: results come back as size-capped frames and raw uint8 arrays, validated on
  the host; nothing is unpickled; images are decoded inside the sandbox;
* wedge the caller: a hung or dead worker is killed and replaced; the call reports it.

It does NOT protect against: kernel exploits and hardware side channels (namespaces and
seccomp share the host kernel; use a VM or gVisor around the worker for that threat level);
kernel memory (pipe buffers, page tables) beyond what rlimits bound, since no cgroup is used;
total CPU when code forks (RLIMIT_CPU is per process; the wall deadline is the real bound);
code learning the host paths of the interpreter and venv (they are bound at the same paths and
listed in ``/proc/self/mountinfo``) or the kernel version; a reader of the code's output being
confused by what it prints.

Levels
------
* ``bwrap`` (default; ``auto`` means bwrap and never falls back): everything above.
* ``process``: the same fork-server, rlimits, seccomp, scrubbed environment and fresh work dir,
  and (when root) a private unprivileged uid per worker, but NO filesystem isolation (code reads
  whatever its uid may read) and no namespaces. Where the kernel has Landlock, writes are
  confined to the work dir and code cannot reach the host process through ``/proc``; without
  Landlock it refuses to start unless the host is root. When not root, the process limit
  counts all of the user's tasks, so it is approximate. If the host process is SIGKILLed
  mid-call, processes the call forked may outlive it. For machines where user namespaces are
  blocked. It warns loudly.
* ``none``: the reference paper's in-process ``exec``. No isolation whatsoever; opt-in, warns.
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
