"""Shared sandboxes and host-side checks for the sandbox tests, offered as fixtures.

Tests that need a level skip with the reason when that level cannot run on this machine.
Set ``ARFT_REQUIRE_BWRAP=1`` or ``ARFT_REQUIRE_PROCESS=1`` (CI sets both, in both of its
passes) to turn that level's absence into a failure instead: a skip there would hide the very
run, the unprivileged host's, that the process level's promises are about.
"""

from __future__ import annotations

import os
import warnings

import psutil
import pytest

from arft_envs.tools.sandbox import Sandbox, SandboxError, SandboxLimits, SandboxWarning

#: Small limits keep the hostile cases fast: each CPU/time limit case costs about a second.
SMALL = SandboxLimits(
    cpu_s=1,
    wall_s=3,
    memory_bytes=1 << 30,
    fsize_bytes=8 << 20,
    nofile=64,
    nproc=16,
    stdout_bytes=4096,
    tmpfs_bytes=64 << 20,
    max_image_side=2048,
    max_code_bytes=64 << 10,
    max_result_bytes=32 << 20,
)


def make_sandbox(level: str, **kwargs) -> Sandbox:
    """A Sandbox of ``level``, or skip (fail under ARFT_REQUIRE_BWRAP) if it cannot run here."""
    kwargs.setdefault("limits", SMALL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SandboxWarning)
            return Sandbox(level=level, **kwargs)
    except SandboxError as e:
        flag = f"ARFT_REQUIRE_{level.upper()}"
        if os.environ.get(flag):
            pytest.fail(f"{flag} is set but the {level} level cannot run: {e}")
        pytest.skip(f"the {level} sandbox level cannot run on this machine: {e}")


@pytest.fixture(scope="session")
def sandbox_maker():
    """:func:`make_sandbox`, for a test that needs a sandbox of its own limits."""
    return make_sandbox


@pytest.fixture(scope="session")
def bwrap_sb():
    sb = make_sandbox("bwrap", workers=2)
    yield sb
    sb.close()


@pytest.fixture(scope="session")
def process_sb():
    sb = make_sandbox("process", workers=1)
    yield sb
    sb.close()


@pytest.fixture(params=["bwrap", "process"])
def any_sb(request):
    """Both isolating levels, for claims they share."""
    return request.getfixturevalue(f"{request.param}_sb")


def template_of(server: int) -> int | None:
    """Host pid of ``server``'s template: the one child it forks, before any call, that forks
    every call's process (see ``worker.py``). It is the server's only child in the server's
    process group: every process a call makes is in the call's own group, which seccomp
    stops it from leaving."""
    try:
        for p in psutil.Process(server).children():
            if os.getpgid(p.pid) == os.getpgid(server):
                return p.pid
    except (OSError, psutil.Error):
        pass
    return None


def is_spare(pid: int, server: int) -> bool:
    """True if ``pid`` is ``server``'s spare: the next call's process, forked ahead.

    Only the template forks (spares, and decoders while a call is answered), and nothing a
    call starts is the template's child: orphans go to the server, a subreaper.
    """
    template = template_of(server)
    try:
        return template is not None and psutil.Process(pid).ppid() == template
    except (OSError, psutil.Error):
        return False


def spare_processes(sb: Sandbox) -> list[int]:
    """Host pids of the live spares of ``sb``'s workers."""
    spares = []
    for server in sb.worker_pids():
        template = template_of(server)
        if template is None:
            continue
        try:
            kids = psutil.Process(template).children()
        except psutil.Error:
            continue
        for p in kids:
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    spares.append(p.pid)
            except psutil.Error:
                pass
    return spares


def stray_processes(sb: Sandbox) -> list[int]:
    """Host pids of processes left behind by calls (not the workers, templates or spares).

    bwrap: everything under the worker's bwrap process except its init, the fork-server, its
    template and the spare.
    process: every process still in the fork-server's session (seccomp forbids setsid, so no
    descendant of a call can leave it) except the fork-server, its template and the spare.
    """
    strays = []
    for server in sb.worker_pids():
        ours = (server, template_of(server))
        if sb.level == "bwrap":
            init = psutil.Process(server).ppid()
            bwrap = psutil.Process(init).ppid()
            pids = [p.pid for p in psutil.Process(bwrap).children(recursive=True)]
            pids = [p for p in pids if p != init and p not in ours]
        else:
            pids = []
            for pid in psutil.pids():
                try:
                    if pid not in ours and os.getsid(pid) == server:
                        pids.append(pid)
                except OSError:
                    pass
        strays += [p for p in pids if not is_spare(p, server)]
    return strays


def assert_healthy(sb: Sandbox, servers_before: list[int] | None = None) -> None:
    """The research's "healthy after": no process of the call remains, the fork-servers that
    ran it are still alive, and the next ordinary call succeeds in an empty work dir."""
    assert stray_processes(sb) == []
    if servers_before is not None:
        for pid in servers_before:
            assert psutil.pid_exists(pid), f"fork-server {pid} died"
    res = sb.run(
        "import os, cv2, numpy as np\n"
        "print(os.listdir('.'))\n"
        "cv2.GaussianBlur(np.zeros((32, 32, 3), np.uint8), (3, 3), 0)\n"
    )
    assert res.status == "ok", res.describe()
    assert res.stdout.strip() == "[]"


@pytest.fixture(scope="session")
def small_limits() -> SandboxLimits:
    return SMALL


@pytest.fixture
def sandbox_factory():
    """``sandbox_factory(level, **kwargs)``: a fresh Sandbox, closed after the test."""
    made = []

    def factory(level: str, **kwargs) -> Sandbox:
        sb = make_sandbox(level, **kwargs)
        made.append(sb)
        return sb

    yield factory
    for sb in made:
        sb.close()


@pytest.fixture(scope="session")
def healthy():
    """``healthy(sb, servers_before=None)``: see :func:`assert_healthy`."""
    return assert_healthy


@pytest.fixture(scope="session")
def spares():
    """``spares(sb)``: see :func:`spare_processes`."""
    return spare_processes


@pytest.fixture(scope="session")
def strays():
    """``strays(sb)``: see :func:`stray_processes`."""
    return stray_processes


@pytest.fixture(scope="session")
def hostile():
    """``hostile(sb, code, **run_kwargs)``: run code, then assert the sandbox is healthy."""

    def run(sb: Sandbox, code: str, **kwargs):
        servers = sb.worker_pids()
        res = sb.run(code, **kwargs)
        assert_healthy(sb, servers)
        return res

    return run


@pytest.fixture(scope="session")
def tmp_mount_points() -> set[str]:
    """Names in the sandbox's /tmp that are mount points of host binds (a checkout under /tmp).

    bwrap binds the interpreter, the venv and the package at their host paths; when those
    live under /tmp, their first path component shows up in the sandbox's /tmp. Everything
    else there must be gone after each call.
    """
    import os
    import sys

    import arft_envs

    paths = (sys.prefix, sys.exec_prefix, sys.base_prefix, os.path.dirname(arft_envs.__file__))
    return {
        os.path.realpath(p).split("/")[2] for p in paths if os.path.realpath(p).startswith("/tmp/")
    }
