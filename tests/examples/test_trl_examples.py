"""The TRL examples warm-start tiny-qwen with TRL's SFTTrainer, then train it with TRL's own
GRPOTrainer and exit 0 (CPU, offline). In each, the reward differs within a group in some
GRPO step, so GRPO's advantages are not all zero; in the multi-turn one the completions'
tool calls parse and run in the env. Both are seeded: the same run gives the same figures."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

ROOT = Path(__file__).resolve().parents[2]
STEP = re.compile(r"^step (\d+): reward (\S+) group_std (\S+)(?: tool_calls (\S+))?$", re.M)


def _run(example: str, *args: str) -> list[dict[str, float]]:
    """The example's per-step figures, after checking it exits 0 and ran its warm start."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / example), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=840,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert re.search(r"^warm start: \d+ SFT steps", proc.stdout, re.M), proc.stdout[-2000:]
    steps = STEP.findall(proc.stdout)
    assert [int(s[0]) for s in steps] == list(range(1, len(steps) + 1)), proc.stdout[-2000:]
    assert len(steps) >= 2, proc.stdout[-2000:]
    return [
        {"reward": float(r), "std": float(std), "calls": float(calls or "nan")}
        for _, r, std, calls in steps
    ]


def test_single_turn_example_has_reward_spread_within_a_group():
    steps = _run("trl_single_turn.py")
    assert all(s["reward"] >= 0.0 for s in steps)
    assert max(s["std"] for s in steps) > 0.0, steps


def test_multi_turn_example_calls_tools_and_has_reward_spread_within_a_group():
    steps = _run("trl_multi_turn.py")
    assert all(s["reward"] >= 0.0 for s in steps)
    assert max(s["calls"] for s in steps) > 0.0, steps  # some completion's call parsed and ran
    assert max(s["std"] for s in steps) > 0.0, steps
