"""The TRL examples train tiny-qwen with TRL's own GRPOTrainer and exit 0 (CPU, offline)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("example", ["trl_single_turn.py", "trl_multi_turn.py"])
def test_trl_example_trains_and_prints_rewards(example):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / example), "--steps", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    steps = re.findall(r"^step (\d+): reward (\S+) group_std (\S+)$", proc.stdout, re.M)
    assert [int(s) for s, _, _ in steps] == [1, 2], proc.stdout[-2000:]
    assert all(float(r) >= 0.0 for _, r, _ in steps)
