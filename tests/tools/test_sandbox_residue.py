"""No residue: nothing one call leaves behind reaches a later call, in its episode or the next.

A *writer* call leaves a random canary in every channel we can enumerate: files under every
writable path (the work dir, the work root, /tmp, /var/tmp, /dev/shm, $HOME), extended
attributes and mode bits of the work root, System V shared memory, message queues and
semaphores, a POSIX message queue, inherited-looking fds, environment variables, its own
memory (a big bytes object, many small strings, its code), its stdout/stderr and the pixels
of an image it returns. Each
channel gets its own canary, so a failure names the channel. Some of these channels are
closed by refusing the write (seccomp denies IPC and file-metadata calls, /dev/shm is
read-only in bwrap): "denied" is as good as "not found next time".

A *reader* call, whose code never holds any canary, then scans everything it can read: its
whole readable memory (copied out through a pipe, so an unmapped page is an error and not a
crash), all files under those paths (names and contents), the work root's xattrs and mode,
``os.environ``, fds 0..1023, and the fixed IPC keys and queue name the writer used. It must
find no canary: in the same episode (the next call on the same Sandbox) and in a new one (a
fresh ``env.reset()`` on the same Sandbox pool). The scanner runs in the writer too, as the
control that shows it would find a canary where there is one.

Names the code chooses are channels too: the fork-server lists the work dir, deletes what is
in it, parses image frames and writes image error lines with ordinary Python objects, so the
writer also puts canaries in hundreds of file names, a directory name, the names of images it
returns, of images it cannot return (undecodable, so their error text carries the name) and
of images whose names cannot be returned, and an xattr name. The reader's memory scan must not
find them: every call's process is forked from a template that never held any call's bytes
(``worker.py``), not from the server.
"""

from __future__ import annotations

import json
import random

import gymnasium as gym
import pytest

import arft_envs  # noqa: F401 - registers the envs
from arft_envs.tools.sandbox import SandboxLimits

#: Room for the scan: reading a few hundred MiB of memory costs about a second of CPU.
LIMITS = SandboxLimits(
    cpu_s=20,
    wall_s=60,
    memory_bytes=2 << 30,
    stdout_bytes=64 << 10,
    tmpfs_bytes=64 << 20,
)
MARK = "ARFT" + "CANARY-"  # never one literal, so no code holds the marker either
CHANNELS = (
    "workdir-file",
    "nested-file",
    "work-root-file",
    "tmp",
    "var-tmp",
    "dev-shm",
    "home",
    "xattr-workdir",
    "xattr-root",
    "mode-root",
    "sysv-shm",
    "sysv-msg",
    "sysv-sem",
    "posix-mq",
    "env",
    "fd",
    "memory-big",
    "memory-small",
    "stdout",
    "stderr",
    "image",
    "file-name",
    "image-name",
    "image-error",
    "unusable-image-name",
    "xattr-name",
)
IPC_KEY = 0x41524600  # + channel index: fixed, so the reader needs no canary to look
MQ_NAME = "/arft-residue-mq"

SCANNER = r"""
import ctypes, errno, fcntl, os, re, stat, sys
MARK = ("ARFT" + "CANARY-").encode()
PAT = re.compile(re.escape(MARK) + rb"[0-9a-f]{24}")
libc = ctypes.CDLL(None, use_errno=True)
libc.write.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
libc.write.restype = ctypes.c_ssize_t

def hits(data, out):
    for m in PAT.finditer(data):
        out.add(m.group().decode())

def scan_memory():
    found, scanned = set(), 0
    regions = []
    for line in open("/proc/self/maps"):
        parts = line.split()
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        path = parts[5] if len(parts) > 5 else ""
        if not parts[1].startswith("r") or path in ("[vvar]", "[vsyscall]", "[vvar_vclock]"):
            continue
        if path and not path.startswith("[") and "w" not in parts[1]:
            continue  # a read-only view of a library or other file: no call wrote it
        regions.append((lo, min(hi, lo + (512 << 20))))
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, 1031, 1 << 20)  # F_SETPIPE_SZ
    except OSError:
        pass
    size = fcntl.fcntl(w, 1032)  # F_GETPIPE_SZ
    tail = b""
    for lo, hi in regions:
        addr = lo
        tail = b""
        while addr < hi:
            n = min(size, hi - addr)
            k = libc.write(w, addr, n)  # the kernel copies it: a page gone is EFAULT, no crash
            if k <= 0:
                break
            chunk = b""
            while len(chunk) < k:
                chunk += os.read(r, k - len(chunk))
            hits(tail + chunk, found)
            tail = chunk[-64:]
            scanned += k
            addr += k
    os.close(r); os.close(w)
    return found, scanned

def scan_files(roots):
    found, files = set(), 0
    for root in roots:
        for d, dirs, names in os.walk(root, onerror=lambda e: None):
            for name in dirs + names:
                hits(name.encode("utf-8", "surrogateescape"), found)
            for name in names:
                files += 1
                if files > 20000:
                    return found, files
                p = os.path.join(d, name)
                try:
                    if stat.S_ISREG(os.lstat(p).st_mode):
                        with open(p, "rb") as f:
                            hits(f.read(1 << 20), found)
                except OSError:
                    pass
    return found, files

def scan_xattrs(paths):
    found = set()
    for p in paths:
        try:
            for name in os.listxattr(p):
                hits(name.encode(), found)
                hits(os.getxattr(p, name), found)
        except OSError:
            pass
    return found

def scan_env():
    found = set()
    for k, v in os.environ.items():
        hits((k + "=" + v).encode(), found)
    try:
        hits(open("/proc/self/environ", "rb").read(), found)
    except OSError:
        pass
    return found

def scan_fds(skip):
    found = set()
    for fd in range(1024):
        if fd in skip:
            continue
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        try:
            hits(os.readlink(f"/proc/self/fd/{fd}").encode(), found)
        except OSError:
            pass
        try:
            if stat.S_ISREG(st.st_mode):
                hits(os.pread(fd, 1 << 20, 0), found)
            elif stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
                os.set_blocking(fd, False)
                hits(os.read(fd, 1 << 16), found)
        except OSError:
            pass
    return found

def probe_ipc(key0, n, mq_name):
    out = {}
    libc.shmat.restype = ctypes.c_void_p
    found = set()
    for i in range(n):
        for kind in ("shm", "msg", "sem"):
            fn = {"shm": libc.shmget, "msg": libc.msgget, "sem": libc.semget}[kind]
            args = (key0 + i, 0, 0) if kind != "msg" else (key0 + i, 0)
            ident = fn(*args)
            e = ctypes.get_errno()
            if ident >= 0:
                out[f"{kind}{i}"] = "exists"
                if kind == "shm":
                    addr = libc.shmat(ident, None, 0o10000)  # SHM_RDONLY
                    if addr not in (None, ctypes.c_void_p(-1).value):
                        hits(ctypes.string_at(addr, 4096), found)
                if kind == "msg":
                    buf = ctypes.create_string_buffer(8 + 4096)
                    if libc.msgrcv(ident, buf, 4096, 0, 0o4000) > 0:  # IPC_NOWAIT
                        hits(buf.raw, found)
            elif e != errno.ENOENT:
                out[f"{kind}{i}"] = "denied"
    mqd = libc.mq_open(mq_name.encode(), os.O_RDONLY | os.O_NONBLOCK)
    e = ctypes.get_errno()
    if mqd >= 0:
        out["mq"] = "exists"
        buf = ctypes.create_string_buffer(8192)
        if libc.mq_receive(mqd, buf, 8192, None) > 0:
            hits(buf.raw, found)
    elif e != errno.ENOENT:
        out["mq"] = "denied"
    return out, found

def scan_all(skip_fds=()):
    root = os.path.dirname(os.getcwd())
    # The work area first: a host /tmp full of files (process level) must not use up the
    # scan's file budget before it gets there.
    roots = [os.getcwd(), root] + sorted({"/tmp", "/var/tmp", "/dev/shm",
             os.environ.get("HOME", "/"), os.environ.get("TMPDIR", "/tmp")} - {os.getcwd(), root})
    mem, scanned = scan_memory()
    files, nfiles = scan_files(roots)
    ipc, ipc_found = probe_ipc(IPC_KEY, N_CHANNELS, MQ_NAME)
    st = os.stat(root)
    return {
        "memory": sorted(mem), "scanned": scanned, "files": sorted(files), "nfiles": nfiles,
        "xattrs": sorted(scan_xattrs([root, os.getcwd()])), "env": sorted(scan_env()),
        "fds": sorted(scan_fds(set(skip_fds))), "ipc": ipc, "ipc_found": sorted(ipc_found),
        "root_mode": st.st_mode, "root_xattrs": sorted(os.listxattr(root)),
    }
"""

WRITER = r"""
import ctypes, json, os, sys
TOKENS = __TOKENS__
report = {}
root = os.path.dirname(os.getcwd())

def attempt(channel, fn):
    try:
        fn(TOKENS[channel])
        report[channel] = "written"
    except Exception as e:
        report[channel] = f"denied ({type(e).__name__})"

def put(path, t):
    with open(path, "w") as f:
        f.write(t)

def ipc(kind, t):
    i = CHANNEL_INDEX[kind]
    libc.shmat.restype = ctypes.c_void_p
    if kind == "sysv-shm":
        ident = libc.shmget(IPC_KEY + i, 4096, 0o1000 | 0o666)
        if ident < 0:
            raise OSError(ctypes.get_errno(), "shmget")
        addr = libc.shmat(ident, None, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "shmat")
        ctypes.memmove(addr, t.encode(), len(t))
    elif kind == "sysv-msg":
        ident = libc.msgget(IPC_KEY + i, 0o1000 | 0o666)
        if ident < 0:
            raise OSError(ctypes.get_errno(), "msgget")
        buf = ctypes.create_string_buffer(ctypes.c_long(1).value.to_bytes(8, "little") + t.encode())
        if libc.msgsnd(ident, buf, len(t), 0o4000) < 0:
            raise OSError(ctypes.get_errno(), "msgsnd")
    elif kind == "sysv-sem":
        if libc.semget(IPC_KEY + i, 1, 0o1000 | 0o666) < 0:
            raise OSError(ctypes.get_errno(), "semget")
    else:
        mqd = libc.mq_open(MQ_NAME.encode(), os.O_CREAT | os.O_RDWR, 0o666, None)
        if mqd < 0:
            raise OSError(ctypes.get_errno(), "mq_open")
        if libc.mq_send(mqd, t.encode(), len(t), 0) < 0:
            raise OSError(ctypes.get_errno(), "mq_send")

attempt("workdir-file", lambda t: put("canary.txt", t))
attempt("nested-file", lambda t: (os.makedirs("a/b/c"), put("a/b/c/f", t)))
attempt("work-root-file", lambda t: put(os.path.join(root, "arft-residue-root"), t))
attempt("tmp", lambda t: put("/tmp/arft-residue-tmp", t))
attempt("var-tmp", lambda t: put("/var/tmp/arft-residue-var-tmp", t))
attempt("dev-shm", lambda t: put("/dev/shm/arft-residue-shm", t))
attempt("home", lambda t: put(os.path.join(os.environ["HOME"], "arft-residue-home"), t))
attempt("xattr-workdir", lambda t: os.setxattr(".", "user.c", t.encode()))
attempt("xattr-root", lambda t: os.setxattr(root, "user.c", t.encode()))
attempt("mode-root", lambda t: os.chmod(root, 0o3777))
for kind in ("sysv-shm", "sysv-msg", "sysv-sem", "posix-mq"):
    attempt(kind, lambda t, kind=kind: ipc(kind, t))
attempt("env", lambda t: (os.environ.__setitem__("C_" + t[-8:], t), os.putenv("D", t)))
KEEP = []
def leave_fds(t):
    fd = os.open("fd-canary", os.O_RDWR | os.O_CREAT)
    os.write(fd, t.encode())
    os.set_inheritable(fd, True)
    os.dup2(fd, 100, inheritable=True)
    r, w = os.pipe()
    os.write(w, t.encode())
    KEEP.extend([fd, r, w])
attempt("fd", leave_fds)
BIG = []
attempt("memory-big", lambda t: BIG.append(t.encode() * 200_000))
attempt("memory-small", lambda t: BIG.append([t + str(i) for i in range(20_000)]))
attempt("stdout", lambda t: print(t, flush=True))
attempt("stderr", lambda t: print(t, file=sys.stderr, flush=True))
import cv2, numpy as np
pixels = lambda t: np.frombuffer((t * 3).encode(), np.uint8).reshape(1, -1, 3)
attempt("image", lambda t: cv2.imwrite("out.png", pixels(t)) or 1 / 0)
def names(t):
    os.makedirs(t + "-dir")
    for i in range(300):
        put(f"{t}-{i}.txt", "")
attempt("file-name", names)
tiny = np.zeros((2, 3, 3), np.uint8)
attempt("image-name", lambda t: all(cv2.imwrite(f"{t}-{i}.png", tiny) for i in range(4)) or 1 / 0)
attempt("image-error", lambda t: [put(f"{t}-{i}.png", "not an image") for i in range(8)])
attempt("unusable-image-name", lambda t: [put(f"{t}\t{i}.png", "") for i in range(50)])
attempt("xattr-name", lambda t: os.setxattr(".", "user." + t, b"1"))
c = scan_all(skip_fds=(0, 1, 2))
control = {  # judged here, so the output stays short enough for a tool message
    "memory": len(c["memory"]) >= len(TOKENS) and c["scanned"] > 10 << 20,
    "files": TOKENS["workdir-file"] in c["files"],
    "env": TOKENS["env"] in c["env"],
    "fds": TOKENS["fd"] in c["fds"],
}
print("REPORT" + json.dumps({"report": report, "control": control}))
"""

READER = r"""
import json
print("SCAN" + json.dumps(scan_all()))
"""


def _program(body: str, tokens: dict[str, str] | None = None) -> str:
    head = (
        f"import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        f"IPC_KEY = {IPC_KEY}\nMQ_NAME = {MQ_NAME!r}\nN_CHANNELS = {len(CHANNELS)}\n"
        f"CHANNEL_INDEX = {dict((c, i) for i, c in enumerate(CHANNELS))!r}\n"
    )
    return head + SCANNER + body.replace("__TOKENS__", repr(tokens or {}))


def _tokens(rng: random.Random) -> dict[str, str]:
    return {
        c: MARK + f"{i:02x}" + "".join(rng.choices("0123456789abcdef", k=22))
        for i, c in enumerate(CHANNELS)
    }


def _parse(text: str, tag: str) -> dict:
    for line in text.splitlines():
        if line.startswith(tag):
            return json.loads(line[len(tag) :])
    raise AssertionError(f"no {tag} line in the call's output:\n{text[-3000:]}")


def _leaks(scan: dict, tokens: dict[str, str]) -> dict[str, list[str]]:
    """Channel -> where the reader found that channel's canary."""
    by_token = {t: c for c, t in tokens.items()}
    out: dict[str, list[str]] = {}
    for where in ("memory", "files", "xattrs", "env", "fds", "ipc_found"):
        for tok in scan[where]:
            out.setdefault(by_token.get(tok, f"unknown canary {tok}"), []).append(where)
    return out


@pytest.fixture(params=["bwrap", "process"])
def sb(request, sandbox_maker):
    sandbox = sandbox_maker(request.param, workers=1, limits=LIMITS)
    yield sandbox
    sandbox.close()


def _write(run, tokens: dict[str, str]) -> dict:
    written = _parse(run(_program(WRITER, tokens), writer=True), "REPORT")
    report, control = written["report"], written["control"]
    assert set(report) == set(CHANNELS)
    # The control: the same scanner finds canaries where they are.
    assert control == {"memory": True, "files": True, "env": True, "fds": True}
    return report


def _check(scan: dict, tokens: dict[str, str], before: dict, where: str) -> None:
    assert scan["scanned"] > 10 << 20, "the reader scanned almost no memory"
    assert _leaks(scan, tokens) == {}, f"canaries found {where}"
    assert scan["ipc"] in ({}, {k: "denied" for k in scan["ipc"]}), (where, scan["ipc"])
    assert (scan["root_mode"], scan["root_xattrs"]) == (before["root_mode"], before["root_xattrs"])


def test_no_canary_reaches_the_next_call(sb):
    """Same Sandbox, consecutive calls: several rounds, each with fresh canaries."""

    def run(code: str, writer: bool = False) -> str:
        res = sb.run(code)
        if writer:  # its undecodable and unusable image files make it a bad_result
            assert res.status == "bad_result" and "REPORT" in res.stdout, res.describe()
            assert sum(n.startswith(tokens["image-name"]) for n in res.images) == 4
        else:
            assert res.status == "ok", res.describe()
        return res.stdout

    before = _parse(run(_program(READER)), "SCAN")
    rng = random.Random(12)
    for _ in range(2):
        tokens = _tokens(rng)
        report = _write(run, tokens)
        assert report["workdir-file"] == report["memory-big"] == "written"
        _check(_parse(run(_program(READER)), "SCAN"), tokens, before, "in the next call")


def test_no_canary_reaches_the_next_episode(sb):
    """An env episode leaves canaries; a fresh ``reset()`` on the same Sandbox finds none."""
    env = gym.make("MATCoding-v0", sandbox=sb, timeout_s=LIMITS.wall_s)
    code = "<think>x</think>\n<code>\n```python\n{}\n```\n</code>"

    def run(program: str, writer: bool = False) -> str:
        obs, *_ = env.step(code.format(program))
        text = obs["messages"][-1]["content"][-1]["text"]
        expected = "Execution produced an invalid result" if writer else "Execution succeeded"
        assert text.startswith(expected), text[:2000]
        return text

    env.reset(seed=0)
    before = _parse(run(_program(READER)), "SCAN")
    tokens = _tokens(random.Random(34))
    _write(run, tokens)
    env.reset(seed=1)
    _check(_parse(run(_program(READER)), "SCAN"), tokens, before, "in the next episode")
    env.close()
