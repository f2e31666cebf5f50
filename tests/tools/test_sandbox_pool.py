"""Workers under load: threads, crashes, hangs, a 1,000-call soak, and pixel parity with the
in-process reference."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
import uuid
import warnings

import numpy as np
import psutil
import pytest

from arft_envs.tools.sandbox import Sandbox, SandboxWarning, _workers


def test_concurrent_calls_from_threads_do_not_cross(bwrap_sb, strays):
    results: dict[tuple[int, int], str] = {}
    errors: list[BaseException] = []

    def caller(i: int) -> None:
        try:
            for j in range(15):
                code = f"import time, os\nopen('mine', 'w').write('{i}-{j}')\ntime.sleep(0.002)\nprint(open('mine').read())"
                res = bwrap_sb.run(code)
                results[(i, j)] = res.stdout.strip()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == {(i, j): f"{i}-{j}" for i in range(5) for j in range(15)}
    assert len(bwrap_sb.worker_pids()) <= 2 and strays(bwrap_sb) == []


def test_worker_killed_while_idle_is_replaced_and_the_next_call_succeeds(sandbox_factory):
    sb = sandbox_factory("bwrap", workers=1)
    (server,) = sb.worker_pids()
    os.kill(server, signal.SIGKILL)
    res = sb.run("print('after')")
    assert res.stdout == "after\n"
    assert sb.worker_pids() != [server]


def test_worker_killed_during_a_call_reports_it_and_recovers(sandbox_factory):
    sb = sandbox_factory("bwrap", workers=1)
    (server,) = sb.worker_pids()
    threading.Timer(0.3, os.kill, (server, signal.SIGKILL)).start()
    res = sb.run("import time; time.sleep(5)", timeout_s=10)
    assert res.status == "killed" and "replaced" in res.reason
    assert sb.run("print('next')").stdout == "next\n"


def test_hung_worker_is_replaced_without_failing_the_call(sandbox_factory, monkeypatch):
    monkeypatch.setattr(_workers, "_ACK_TIMEOUT_S", 0.5)
    sb = sandbox_factory("bwrap", workers=1)
    (server,) = sb.worker_pids()
    os.kill(server, signal.SIGSTOP)
    res = sb.run("print('still works')")
    assert res.stdout == "still works\n"
    assert sb.worker_pids() != [server]


def test_process_level_worker_killed_is_replaced(sandbox_factory):
    sb = sandbox_factory("process", workers=1)
    (server,) = sb.worker_pids()
    os.kill(server, signal.SIGKILL)
    assert sb.run("print('after')").stdout == "after\n"


def test_busy_calls_on_a_closed_sandbox_end(sandbox_factory):
    sb = sandbox_factory("bwrap", workers=1)
    out = {}
    t = threading.Thread(
        target=lambda: out.update(res=sb.run("import time; time.sleep(30)", timeout_s=60))
    )
    t.start()
    time.sleep(0.5)
    sb.close()
    t.join(timeout=20)
    assert not t.is_alive() and out["res"].status in ("killed", "timeout")


# --- benign OpenCV snippets give the same pixels as in-process exec -------------------------

SNIPPETS = {
    "rotate": "out = cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)",
    "rotate-affine": (
        "m = cv2.getRotationMatrix2D((img.shape[1] / 2, img.shape[0] / 2), 30, 1.0)\n"
        "out = cv2.warpAffine(img, m, (img.shape[1], img.shape[0]))"
    ),
    "flip": "out = cv2.flip(img, 1)",
    "brightness": "out = cv2.convertScaleAbs(img, alpha=1.3, beta=25)",
    "blur": "out = cv2.GaussianBlur(img, (7, 7), 0)",
    "denoise": "out = cv2.fastNlMeansDenoisingColored(img, None, 10, 10, 7, 21)",
    "crop": "out = img[10:70, 20:90]",
    "pil-enhance": (
        "from PIL import Image, ImageEnhance\n"
        "pil = Image.open('path_to_input_image.jpg').convert('RGB')\n"
        "pil = ImageEnhance.Contrast(pil).enhance(1.5)\n"
        "out = cv2.cvtColor(np.asarray(pil), cv2.COLOR_RGB2BGR)"
    ),
}


@pytest.fixture(scope="module")
def reference_sb():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxWarning)
        sb = Sandbox(level="none")
    yield sb
    sb.close()


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:96, 0:128]
    base = np.stack([x * 2, y * 2, (x + y)], axis=-1).astype(np.float32)
    noisy = base + rng.normal(0, 12, base.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", sorted(SNIPPETS))
@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_benign_snippets_match_in_process_exec(any_sb, reference_sb, photo, name, ext):
    code = (
        "import cv2, numpy as np\n"
        "img = cv2.imread('path_to_input_image.jpg')\n"
        f"{SNIPPETS[name]}\n"
        f"cv2.imwrite('path_to_output_image{ext}', out)\n"
    )
    files = {"path_to_input_image.jpg": photo}
    ours, ref = any_sb.run(code, files=files), reference_sb.run(code, files=files)
    assert ours.status == ref.status == "ok", ours.describe()
    key = f"path_to_output_image{ext}"
    np.testing.assert_array_equal(ours.images[key], ref.images[key])


# --- soak -----------------------------------------------------------------------------------

BENIGN = [
    "print(sum(range(100)))",
    "import cv2\nim = cv2.imread('in.jpg')\ncv2.imwrite('out.png', cv2.flip(im, 0))",
    "import numpy as np\nprint(np.arange(12).reshape(3, 4).sum())",
    "import cv2\nim = cv2.imread('in.jpg')\nprint(cv2.GaussianBlur(im, (5, 5), 0).mean())",
]
HOSTILE = [
    "import os\nwhile True: os.fork()",
    "import os, time\nif os.fork() == 0:\n    time.sleep(1000)\nprint('x')",
    "import os\nfor _ in range(5):\n    if os.fork() == 0: os._exit(0)",
    "import socket; socket.socket()",
    "import os; os.kill(os.getppid(), 9)",
    "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)",
    "import os; os._exit(3)",
    "b = bytearray(50 * 1024**3)",
    "for i in range(9):\n    open(f'f{i}', 'wb').write(b'x' * 7 * 1024 * 1024)",
    "import os\nfor fd in range(3, 64):\n    try: os.write(fd, b'\\xff' * 100)\n    except OSError: pass",
    "import threading, time\nfor _ in range(100): threading.Thread(target=time.sleep, args=(99,), daemon=True).start()",
    "import os; os.makedirs('a/b/c'); open('a/b/c/x', 'w').write('x'); os.chmod('a/b', 0)",
    "open('/tmp/outside', 'w').write('x')",
    "import time; time.sleep(100)",  # runs with a short timeout
]


@pytest.mark.parametrize("level,calls", [("bwrap", 1000), ("process", 200)])
def test_many_mixed_calls_leak_no_process_and_no_file(
    sandbox_factory, strays, monkeypatch, level, calls, tmp_mount_points
):
    host_tmp = tempfile.mkdtemp(prefix="arft-soak-")
    os.chmod(host_tmp, 0o755)
    monkeypatch.setattr(tempfile, "tempdir", host_tmp)  # where a process-level worker lives
    sb = sandbox_factory(level, workers=1)
    marker = f"arft-soak-{uuid.uuid4().hex}"
    hostile = list(HOSTILE)
    if level == "bwrap" or sb.worker_info().get("landlock"):
        hostile += [f"open('/tmp/{marker}', 'w')", f"open('/dev/shm/{marker}', 'w')"]
    image = np.full((48, 64, 3), 128, np.uint8)
    rng = np.random.default_rng(0)
    statuses: dict[str, int] = {}
    n_hostile = 0
    for i in range(calls):
        if rng.random() < 0.1:
            code = hostile[n_hostile % len(hostile)]
            n_hostile += 1
        else:
            code = BENIGN[i % len(BENIGN)]
        res = sb.run(code, files={"in.jpg": image}, timeout_s=0.3 if "sleep(100)" in code else None)
        statuses[res.status] = statuses.get(res.status, 0) + 1
    assert n_hostile >= len(hostile)  # every hostile case ran
    assert statuses.get("ok", 0) >= calls - n_hostile
    assert strays(sb) == []
    # The writable area holds only this call's own work dir, and it is empty.
    res = sb.run("import os\nprint(sorted(os.listdir('..')), os.listdir('.'))")
    listing, own = res.stdout.rsplit(" ", 1)
    assert own.strip() == "[]"
    assert len(set(eval(listing)) - tmp_mount_points) == 1
    servers = sb.worker_pids()
    sb.close()
    assert os.listdir(host_tmp) == []  # the process level's worker dir is gone too
    os.rmdir(host_tmp)
    assert not os.path.exists(f"/tmp/{marker}") and not os.path.exists(f"/dev/shm/{marker}")
    assert not any(psutil.pid_exists(p) and _not_zombie(p) for p in servers)


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_interrupted_call_never_leaks_its_answer_into_the_next(sandbox_factory):
    sb = sandbox_factory("bwrap", workers=1)

    def interrupt(*_):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(KeyboardInterrupt):
            sb.run("import time\ntime.sleep(1)\nprint('first')")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert sb.run("print('second')").stdout == "second\n"
