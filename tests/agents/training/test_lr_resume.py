"""A resumed run follows the learning-rate schedule where it was: the rates of a run resumed
at step k are the uninterrupted run's, and a resume that extends ``steps`` goes on from the
rate reached instead of re-planning the whole run (which made the rate jump back up)."""

from __future__ import annotations

import json
import shutil

import pytest
from accelerate_train import fresh, small_config

from agents.training import Trainer
from agents.training.optim import LrSchedule


def _lrs(run) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [row["lr"] for row in sorted(rows, key=lambda r: r["step"])]


def _settings(**extra):
    return dict(learning_rate=1e-6, lr_schedule="linear", warmup_steps=0, **extra)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_run_resumed_at_step_k_has_the_uninterrupted_runs_learning_rates(
    tiny_policy, tmp_path, schedule
):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    settings = dict(learning_rate=1e-6, lr_schedule=schedule, warmup_steps=1, keep_checkpoints=9)
    Trainer(small_config(whole, 4, **settings), policy=fresh(tiny_policy)).train()
    # a run of 4 steps stopped after step 2: its later checkpoints never happened
    Trainer(small_config(parts, 4, **settings), policy=fresh(tiny_policy)).train()
    for step in (3, 4):
        shutil.rmtree(parts / "checkpoints" / f"step_{step:06d}")
    Trainer(small_config(parts, 4, **settings), policy=fresh(tiny_policy), resume=True).train()
    expected = _lrs(whole)
    assert len(expected) == 4 and len(set(expected)) > 2  # warmup, then a decay
    assert _lrs(parts) == pytest.approx(expected, rel=1e-12)


def test_extending_a_run_continues_from_the_rate_reached(tiny_policy, tmp_path):
    run = tmp_path / "run"
    Trainer(small_config(run, 3, **_settings()), policy=fresh(tiny_policy)).train()
    before = _lrs(run)
    assert before == pytest.approx([1e-6, 2 / 3 * 1e-6, 1 / 3 * 1e-6])
    Trainer(small_config(run, 5, **_settings()), policy=fresh(tiny_policy), resume=True).train()
    lrs = _lrs(run)
    assert lrs[:3] == pytest.approx(before, rel=1e-12)
    # before the fix step 4 ran at 1 - 3/5 = 0.4e-6, above step 3's 0.33e-6
    assert all(b < a for a, b in zip(lrs[:-1], lrs[1:], strict=True)), lrs
    # the rest decays linearly from step 3's rate (1/3) to 0 at update 5
    assert lrs[3:] == pytest.approx([2 / 9 * 1e-6, 1 / 9 * 1e-6])


def test_schedule_plan_survives_a_second_extension():
    schedule = LrSchedule(4, 0, "linear")
    schedule.extend(2, 6)  # from update 1's 0.75 to 0 at update 6
    assert [schedule(i) for i in range(6)] == pytest.approx([1, 0.75, 0.6, 0.45, 0.3, 0.15])
    schedule.extend(4, 8)  # from update 3's 0.45 to 0 at update 8
    assert [schedule(i) for i in range(3, 8)] == pytest.approx([0.45, 0.36, 0.27, 0.18, 0.09])
    schedule.extend(4, 8)  # the same length again: no change
    assert len(schedule.continuations) == 2
