"""Each example runs as a user would run it (a subprocess, tiny budgets), exits 0 and prints
its figure."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _run(script: str, *args: str, timeout: int = 600) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=EXAMPLES.parent,
    )
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


def test_openenv_client_plays_an_expert_episode_over_loopback():
    pytest.importorskip("openenv", reason="install arft[serve]")
    out = _run("openenv_client.py", "--seed", "0")
    match = re.search(r"episode return over OpenEnv: (-?\d+\.\d+)", out)
    assert match, out
    assert float(match.group(1)) > 0
    assert "f1=1.0" in out  # the expert's answer was right, scored by the server's env


def test_sb3_ppo_smoke_run_prints_random_and_trained_figures():
    pytest.importorskip("stable_baselines3", reason="install arft[sb3]")
    out = _run("sb3_ppo.py", "--steps", "64", "--eval-episodes", "10")
    for policy in ("random policy", "PPO greedy"):
        assert re.search(
            rf"{policy}\s*: mean reward -?\d+\.\d+, correct diagnosis \d+\.\d%", out
        ), out
