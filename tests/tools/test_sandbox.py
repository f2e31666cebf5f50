"""The sandbox's interface: limits, results, inputs, levels, the self-test, and lifecycle."""

from __future__ import annotations

import os
import warnings

import cv2
import numpy as np
import pytest
from PIL import Image

from arft_envs.tools.sandbox import (
    ExecResult,
    Sandbox,
    SandboxError,
    SandboxLimits,
    SandboxWarning,
    _seccomp,
    get_default_sandbox,
)
from arft_envs.tools.sandbox import sandbox as sandbox_module

# --- SandboxLimits --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({"cpu_s": 0}, ValueError),
        ({"wall_s": -1}, ValueError),
        ({"wall_s": float("inf")}, ValueError),
        ({"memory_bytes": 1 << 20}, ValueError),
        ({"nofile": 3}, ValueError),
        ({"nproc": 0}, ValueError),
        ({"stdout_bytes": 1.5}, TypeError),
        ({"max_image_side": "big"}, TypeError),
        ({"nproc": True}, TypeError),
    ],
)
def test_limits_reject_bad_values_with_a_message(kwargs, error):
    with pytest.raises(error, match="SandboxLimits"):
        SandboxLimits(**kwargs)


def test_limits_defaults_match_the_issue():
    lim = SandboxLimits()
    assert (lim.cpu_s, lim.wall_s, lim.memory_bytes, lim.fsize_bytes) == (5, 10, 2 << 30, 32 << 20)
    assert (lim.nofile, lim.nproc, lim.stdout_bytes, lim.tmpfs_bytes) == (
        64,
        16,
        64 << 10,
        256 << 20,
    )
    assert (lim.max_image_side, lim.max_code_bytes, lim.max_result_bytes) == (
        8192,
        1 << 20,
        64 << 20,
    )


# --- ExecResult -----------------------------------------------------------------------------


def test_describe_renders_status_output_and_images():
    res = ExecResult(
        status="error",
        exit_code=1,
        stdout="hello\n",
        stderr="Traceback ...\nNameError: name 'x' is not defined\n",
        images={"out.png": np.zeros((4, 6, 3), np.uint8)},
    )
    text = res.describe()
    assert text.splitlines()[0] == "Execution failed with an error."
    assert "[stdout]\nhello" in text and "NameError" in text
    assert "[image files written] out.png (6x4)" in text
    assert not res.ok


@pytest.mark.parametrize(
    "res,first_line",
    [
        (ExecResult(status="ok", exit_code=0), "Execution succeeded."),
        (
            ExecResult(status="timeout", reason="wall-clock limit of 2 s exceeded"),
            "Execution timed out: wall-clock limit of 2 s exceeded.",
        ),
        (
            ExecResult(status="killed", reason="CPU time limit of 1 s exceeded"),
            "Execution was stopped: CPU time limit of 1 s exceeded.",
        ),
        (ExecResult(status="signal", signal=11), "Execution crashed with signal SIGSEGV (11)."),
        (ExecResult(status="error", exit_code=3), "Execution failed with exit code 3."),
        (ExecResult(status="bad_result", reason="x"), "Execution produced an invalid result: x."),
    ],
)
def test_describe_status_lines(res, first_line):
    assert res.describe().splitlines()[0] == first_line


def test_describe_cuts_long_output():
    text = ExecResult(status="ok", stdout="y" * 10_000).describe(max_chars=100)
    assert len(text) < 300 and "…[cut 9900 characters]" in text


# --- levels and construction ----------------------------------------------------------------


def test_unknown_level_and_bad_workers_are_rejected():
    with pytest.raises(ValueError, match="level must be one of"):
        Sandbox(level="docker")
    with pytest.raises(ValueError, match="workers"):
        Sandbox(level="none", workers=0)


def test_auto_level_is_bwrap_here(sandbox_factory):
    assert sandbox_factory("auto", workers=1).level == "bwrap"


def test_auto_never_falls_back_and_says_how_to_fix(monkeypatch):
    monkeypatch.setenv("ARFT_BWRAP", "/nonexistent/bwrap")
    with pytest.raises(SandboxError) as info:
        Sandbox(level="auto", workers=1)
    msg = str(info.value)
    assert "bubblewrap" in msg and "level='process'" in msg and "never falls back" in msg


def test_self_test_refuses_a_sandbox_without_the_seccomp_filter(monkeypatch):
    allow_all = bytes([0x06, 0, 0, 0, 0, 0, 0xFF, 0x7F])  # BPF_RET|BPF_K SECCOMP_RET_ALLOW
    monkeypatch.setattr(_seccomp, "build_template", lambda: allow_all)
    for level in ("bwrap", "process"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SandboxWarning)
            with pytest.raises(SandboxError, match="self-test failed.*socket"):
                Sandbox(level=level, workers=1)


def test_process_and_none_levels_warn_loudly():
    with pytest.warns(SandboxWarning, match="NO filesystem isolation"):
        Sandbox(level="process", workers=1).close()
    with pytest.warns(SandboxWarning, match="no\\s+isolation"):
        Sandbox(level="none").close()


def test_bwrap_processes_do_not_run_as_host_root(bwrap_sb):
    for server in bwrap_sb.worker_pids():
        with open(f"/proc/{server}/status") as f:
            uid = next(line.split()[1] for line in f if line.startswith("Uid:"))
        assert int(uid) != 0


def test_context_manager_closes_and_run_after_close_raises(sandbox_factory, strays):
    sb = sandbox_factory("bwrap", workers=1)
    with sb:
        assert sb.run("print(1)").ok
        servers = sb.worker_pids()
    assert sb.closed and sb.worker_pids() == []
    for pid in servers:
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie_free(pid)
    with pytest.raises(SandboxError, match="closed"):
        sb.run("print(1)")


def _is_zombie_free(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


# --- inputs ---------------------------------------------------------------------------------


def test_code_over_the_size_cap_is_refused_without_running(bwrap_sb, small_limits):
    res = bwrap_sb.run("x = 1\n" * (small_limits.max_code_bytes // 6 + 10))
    assert res.status == "error" and "not run" in res.stderr


@pytest.mark.parametrize(
    "code,needle",
    [
        ("print('a\\0b')\x00", "null bytes"),
        ("x = '\udcff'", ""),
        ("(" * 1000, ""),
        ("def f(:\n", "SyntaxError"),
    ],
    ids=["nul", "lone-surrogate", "unbalanced", "syntax"],
)
def test_bad_code_strings_fail_cleanly(bwrap_sb, code, needle):
    res = bwrap_sb.run(code)
    assert res.status == "error" and needle in res.stderr


@pytest.mark.parametrize(
    "files,error",
    [
        ({"../escape.png": b"x"}, ValueError),
        ({"a/b.png": b"x"}, ValueError),
        ({"": b"x"}, ValueError),
        ({"bad\n.png": b"x"}, ValueError),
        ({"x.png": np.zeros((4, 4), np.uint8)}, ValueError),
        ({"x.png": np.zeros((4, 4, 3), np.float32)}, ValueError),
        ({"x.png": np.zeros((3000, 4, 3), np.uint8)}, ValueError),
        ({"x.png": "a string"}, TypeError),
        ({"big.bin": b"x" * (40 << 20)}, ValueError),
    ],
    ids=["dotdot", "slash", "empty", "newline", "grey", "float", "too-tall", "str", "too-big"],
)
def test_bad_files_are_refused_on_the_host(bwrap_sb, files, error):
    with pytest.raises(error):
        bwrap_sb.run("pass", files=files)


@pytest.mark.parametrize("timeout_s", [0, -1, float("nan")])
def test_bad_timeouts_are_refused(bwrap_sb, timeout_s):
    with pytest.raises(ValueError, match="timeout_s"):
        bwrap_sb.run("pass", timeout_s=timeout_s)


def test_array_input_is_lossless_and_readable_by_cv2_and_pil_whatever_its_name(any_sb):
    rgb = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    code = (
        "import cv2, numpy as np\n"
        "from PIL import Image\n"
        "a = cv2.cvtColor(cv2.imread('path_to_input_image.jpg'), cv2.COLOR_BGR2RGB)\n"
        "b = np.asarray(Image.open('path_to_input_image.jpg').convert('RGB'))\n"
        "assert (a == b).all()\n"
        "cv2.imwrite('path_to_output_image.png', cv2.cvtColor(a, cv2.COLOR_RGB2BGR))\n"
    )
    res = any_sb.run(code, files={"path_to_input_image.jpg": rgb})
    assert res.status == "ok", res.describe()
    assert list(res.images) == ["path_to_output_image.png"]  # the unchanged input is not echoed
    np.testing.assert_array_equal(res.images["path_to_output_image.png"], rgb)


def test_bytes_inputs_are_written_verbatim(any_sb):
    data = bytes(range(256)) * 3
    res = any_sb.run(
        "import hashlib; print(hashlib.sha256(open('blob.bin', 'rb').read()).hexdigest())",
        files={"blob.bin": data},
    )
    import hashlib

    assert res.stdout.strip() == hashlib.sha256(data).hexdigest()


def test_an_overwritten_input_image_is_returned(bwrap_sb):
    rgb = np.zeros((8, 8, 3), np.uint8)
    code = "import cv2\nim = cv2.imread('in.jpg')\ncv2.imwrite('in.jpg', 255 - im)"
    res = bwrap_sb.run(code, files={"in.jpg": rgb})
    assert res.ok and res.images["in.jpg"].shape == (8, 8, 3)


def test_inputs_larger_than_the_tmpfs_are_an_error_not_a_crash(sandbox_factory, small_limits):
    from dataclasses import replace

    sb = sandbox_factory("bwrap", workers=1, limits=replace(small_limits, tmpfs_bytes=1 << 20))
    (server,) = sb.worker_pids()
    res = sb.run("pass", files={"big.bin": b"x" * (2 << 20)})
    assert res.status == "error" and "could not be written" in res.stderr
    assert sb.run("print(1)").ok and sb.worker_pids() == [server]


def test_work_dir_is_fresh_per_call(any_sb):
    assert any_sb.run("open('left_behind.txt', 'w').write('x')").ok
    res = any_sb.run("import os; print(os.listdir('.'), os.path.exists('left_behind.txt'))")
    assert res.stdout.strip() == "[] False"


# --- the none level -------------------------------------------------------------------------


def test_opencv_warnings_read_the_same_every_run(any_sb):
    # OpenCV stamps its log lines with the time since it loaded ("[ WARN:0@0.088]"); in a
    # tool message that made the model's context, and so training, differ between runs.
    code = "import cv2\nassert cv2.imread('missing.png') is None\n"
    first, second = any_sb.run(code), any_sb.run(code)
    assert first.status == second.status == "ok"
    assert "can't open/read file" in first.stderr
    assert "[ WARN:0]" in first.stderr and first.stderr == second.stderr


@pytest.fixture(scope="module")
def none_sb():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxWarning)
        sb = Sandbox(level="none", limits=SandboxLimits(wall_s=2, stdout_bytes=100))
    yield sb
    sb.close()


def test_none_level_runs_in_this_process(none_sb):
    res = none_sb.run("import os; print(os.getpid())")
    assert res.ok and int(res.stdout) == os.getpid()


def test_none_level_reports_errors_exit_codes_and_truncation(none_sb):
    res = none_sb.run("1 / 0")
    assert res.status == "error" and "ZeroDivisionError" in res.stderr
    assert none_sb.run("import sys; sys.exit(4)").exit_code == 4
    res = none_sb.run("print('z' * 1000)")
    assert res.stdout_truncated and res.stdout.endswith("…[truncated 901 bytes]")


def test_none_level_returns_images_and_restores_cwd(none_sb):
    cwd = os.getcwd()
    rgb = np.full((5, 7, 3), (10, 20, 30), np.uint8)
    code = "import cv2\ncv2.imwrite('out.png', cv2.imread('in.jpg'))"
    res = none_sb.run(code, files={"in.jpg": rgb})
    assert res.ok and os.getcwd() == cwd
    np.testing.assert_array_equal(res.images["out.png"], rgb)


def test_none_level_times_out_in_the_main_thread(none_sb):
    res = none_sb.run("while True: pass", timeout_s=0.2)
    assert res.status == "timeout"


# --- the process level ----------------------------------------------------------------------


def test_process_level_runs_as_a_separate_unprivileged_process(process_sb):
    res = process_sb.run("import os; print(os.getpid(), os.getuid())")
    pid, uid = map(int, res.stdout.split())
    assert res.ok and pid != os.getpid()
    if os.geteuid() == 0:
        assert uid != 0


def test_process_level_can_import_the_standard_library(process_sb):
    """As root the venv may sit under a 0700 directory; imports must still work after the
    drop to uid 65534."""
    res = process_sb.run("import json, decimal, sqlite3, fractions; print('ok')")
    assert res.stdout == "ok\n", res.describe()


def test_process_level_work_dir_is_removed_on_close(sandbox_factory):
    sb = sandbox_factory("process", workers=1)
    res = sb.run("import os; print(os.path.dirname(os.getcwd()))")
    base = res.stdout.strip()
    assert os.path.isdir(base)
    sb.close()
    assert not os.path.exists(base)


# --- the default instance -------------------------------------------------------------------


def test_default_sandbox_is_shared_per_level():
    a = get_default_sandbox("bwrap")
    assert get_default_sandbox("bwrap") is a
    assert a.run("print(2)").stdout == "2\n"


def test_default_sandbox_after_fork_gets_its_own_workers():
    parent = get_default_sandbox("bwrap")
    parent_servers = set(parent.worker_pids())
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            os.close(r)
            child = get_default_sandbox("bwrap")
            res = child.run("print(3)")
            same = child is parent or bool(set(child.worker_pids()) & parent_servers)
            # The parent's instance, used from the child, must not use the parent's workers.
            res2 = parent.run("print(4)")
            reused = bool(set(parent.worker_pids()) & parent_servers)
            ok = res.stdout == "3\n" and res2.stdout == "4\n" and not same and not reused
            os.write(w, b"ok" if ok else repr((res, res2, same, reused)).encode()[:500])
            child.close()
            parent.close()
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    msg = os.read(r, 1000)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert msg == b"ok" and status == 0
    assert set(parent.worker_pids()) == parent_servers  # the parent's workers are untouched
    assert parent.run("print(5)").stdout == "5\n"


def test_default_sandbox_module_closes_at_exit_hook_is_registered():
    assert sandbox_module._close_defaults.__module__ == sandbox_module.__name__


# --- the decoders agree with the in-process reference ---------------------------------------


def test_output_decoding_matches_cv2_and_pil(bwrap_sb, tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), rgb[:, :, ::-1])
    res = bwrap_sb.run(
        "open('x.png', 'wb').write(open('in.bin', 'rb').read())",
        files={"in.bin": path.read_bytes()},
    )
    np.testing.assert_array_equal(res.images["x.png"], rgb)
    np.testing.assert_array_equal(res.images["x.png"], np.asarray(Image.open(path).convert("RGB")))


# --- images saved losslessly with cv2.imwrite are returned without decoding ------------------


def _logged_cv2():
    """A stand-in cv2 namespace whose imwrite records into a fresh log (the real cv2 is left
    alone: the worker installs the log only inside the sandbox)."""
    from types import SimpleNamespace

    from arft_envs.tools.sandbox import _imageio

    ns = SimpleNamespace(
        imwrite=cv2.imwrite,
        cvtColor=cv2.cvtColor,
        COLOR_BGR2RGB=cv2.COLOR_BGR2RGB,
        COLOR_GRAY2RGB=cv2.COLOR_GRAY2RGB,
    )
    log = _imageio.ImwriteLog()
    log.install(ns)
    return ns, log


_BGR = np.random.default_rng(2).integers(0, 256, (24, 40, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "name, img, params, recorded",
    [
        ("x.png", _BGR, None, True),
        ("x.PNG", _BGR, [], True),
        ("x.bmp", _BGR, None, True),
        ("x.png", _BGR[:, :, 0], None, True),  # grey: returned with 3 equal channels
        ("x.png", _BGR[:, :, :1], None, True),
        ("x.png", _BGR[:, ::-1], None, True),  # a non-contiguous view
        ("x.jpg", _BGR, None, False),  # lossy
        ("x.png", _BGR[:, :, 0], [cv2.IMWRITE_PNG_BILEVEL, 1], False),  # params may lose detail
        ("x.png", _BGR.astype(np.uint16) * 257, None, False),
        ("x.png", np.dstack([_BGR, _BGR[:, :, :1]]), None, False),  # alpha
    ],
)
def test_imwrite_log_returns_exactly_what_decoding_gives(tmp_path, name, img, params, recorded):
    from arft_envs.tools.sandbox import _imageio

    ns, log = _logged_cv2()
    path = str(tmp_path / name)
    assert (ns.imwrite(path, img) if params is None else ns.imwrite(path, img, params)) is True
    got = log.lookup(path)
    assert (got is not None) == recorded
    if recorded:
        np.testing.assert_array_equal(got, _imageio.decode_image_file(path, 4096))


def test_imwrite_log_ignores_files_changed_after_writing(tmp_path):
    ns, log = _logged_cv2()
    a, b = str(tmp_path / "a.png"), str(tmp_path / "b.png")
    img = _BGR.copy()
    ns.imwrite(a, img)
    img[:] = 0  # mutating the array afterwards does not change what was saved
    np.testing.assert_array_equal(log.lookup(a), _BGR[:, :, ::-1])
    ns.imwrite(b, img)
    with open(b, "r+b") as f:  # same size, same inode, other bytes
        f.seek(-20, os.SEEK_END)
        f.write(bytes(20))
    assert log.lookup(b) is None
    Image.fromarray(_BGR).save(a)  # rewritten by another library
    assert log.lookup(a) is None
    assert log.lookup(str(tmp_path / "missing.png")) is None


def test_imwrite_log_keeps_copies_within_its_budget(tmp_path):
    from arft_envs.tools.sandbox import _imageio

    ns, _ = _logged_cv2()
    log = _imageio.ImwriteLog(max_bytes=_BGR.nbytes)
    log.install(ns)
    a, b = str(tmp_path / "a.png"), str(tmp_path / "b.png")
    ns.imwrite(a, _BGR)
    ns.imwrite(b, _BGR)
    assert log.lookup(a) is not None and log.lookup(b) is None
    ns.imwrite(a, _BGR[:, :, 0])  # an overwrite frees the old copy first
    assert log.lookup(a) is not None


def test_sandbox_returns_saved_images_as_the_files_decode(any_sb, tmp_path):
    rgb = np.random.default_rng(3).integers(0, 256, (30, 20, 3), dtype=np.uint8)
    code = (
        "import cv2\n"
        "from PIL import Image\n"
        "im = cv2.imread('in.png')\n"
        "cv2.imwrite('a.png', im)\n"
        "im[:] = 0\n"
        "cv2.imwrite('b.png', im)\n"
        "Image.open('in.png').transpose(Image.Transpose.FLIP_LEFT_RIGHT).save('b.png')\n"
        "cv2.imwrite('c.bmp', cv2.imread('in.png', cv2.IMREAD_GRAYSCALE))\n"
        "cv2.imwrite('d.png', cv2.imread('in.png', 0), [cv2.IMWRITE_PNG_BILEVEL, 1])\n"
    )
    res = any_sb.run(code, files={"in.png": rgb})
    assert res.status == "ok", res.describe()
    cv2.imwrite(str(tmp_path / "in.bmp"), rgb[:, :, ::-1])  # array inputs arrive as BMP
    grey = cv2.imread(str(tmp_path / "in.bmp"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(tmp_path / "d.png"), grey, [cv2.IMWRITE_PNG_BILEVEL, 1])
    expected = {
        "a.png": rgb,
        "b.png": rgb[:, ::-1],
        "c.bmp": np.dstack([grey] * 3),
        "d.png": np.dstack([cv2.imread(str(tmp_path / "d.png"), cv2.IMREAD_GRAYSCALE)] * 3),
    }
    assert sorted(res.images) == sorted(expected)
    for name, want in expected.items():
        np.testing.assert_array_equal(res.images[name], want, err_msg=name)


def test_an_imwrite_error_reads_as_it_does_outside_the_sandbox(any_sb):
    res = any_sb.run("import cv2, numpy as np\ncv2.imwrite('x.png', np.zeros((0, 0, 3), np.uint8))")
    assert res.status == "error" and "cv2.error" in res.stderr
    assert "_imageio" not in res.stderr and 'File "<code>", line 2' in res.stderr
