"""The trainer across processes: a run killed with SIGKILL and resumed, and two DDP processes
(gloo, CPU) launched by ``accelerate launch``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from accelerate_train import launch, launcher, script_env

SCRIPT = Path(__file__).parents[1] / "accelerate_train.py"
REPO = Path(__file__).resolve().parents[3]


def _steps(run: Path) -> list[int]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if line.strip()]


def test_killed_run_resumes_exactly_where_it_stopped(tmp_path):
    steps = 6
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(killed), str(steps)],
        env=script_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    marker = killed / "checkpoints" / "step_000002" / "trainer_state.json"
    deadline = time.time() + 120
    while not marker.exists():
        assert process.poll() is None, process.stdout.read().decode()[-2000:]
        assert time.time() < deadline, "no checkpoint of step 2 within 120 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    done = sorted(int(p.name.split("_")[1]) for p in (killed / "checkpoints").glob("step_*"))
    assert max(done) < steps, "the run finished before it was killed; nothing to resume"

    resumed = subprocess.run(
        [sys.executable, str(SCRIPT), str(killed), str(steps), "--resume"],
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"resumed from {killed / 'checkpoints'}" in resumed.stdout
    assert _steps(killed) == list(range(1, steps + 1))  # each step exactly once

    # The same run, never interrupted, logs the same steps and ends with the same weights.
    clean = tmp_path / "clean"
    subprocess.run(
        [sys.executable, str(SCRIPT), str(clean), str(steps)], env=script_env(), check=True,
        capture_output=True, timeout=300,
    )  # fmt: skip
    rows = [
        [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        for run in (killed, clean)
    ]
    for a, b in zip(*rows, strict=True):
        assert (a["step"], a["reward_mean"], a["loss"]) == (b["step"], b["reward_mean"], b["loss"])
    assert (killed / "weights_rank0.sha256").read_text() == (
        clean / "weights_rank0.sha256"
    ).read_text()


@pytest.mark.skipif(launcher() is None, reason="accelerate's launcher is not installed")
def test_two_ddp_processes_end_with_identical_weights(tmp_path):
    result = launch(SCRIPT, str(tmp_path), "2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "rank 0 of 2" in result.stdout and "rank 1 of 2" in result.stdout
    digests = [(tmp_path / f"weights_rank{r}.sha256").read_text() for r in (0, 1)]
    assert digests[0] == digests[1]
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["episodes"] == 16 for r in rows)  # 2 processes × 2 groups × 4
