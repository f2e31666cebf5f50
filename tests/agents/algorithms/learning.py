"""Shared by the algorithm tests: a run of an algorithm on the toy learnable task and its
reward curve, and two more toy envs written as a third party would.

- ``ArftTestDigit-v0`` (tests/agents/accelerate_train.py) with digits "37": write the digit the
  prompt names; a random tiny model does it about 30% of the time. Every algorithm must learn it.
- ``ArftTestPrize-v0``: the prompt names a prize (0, 1 or 2) and the reward is half of it,
  whatever the reply: nothing to learn for the policy, everything for a critic (the return is
  a function of the prompt), so a value model's explained variance can approach 1.
- ``ArftTestMixed-v0``: even tasks pay a fixed 0.5 (every member of a group gets the same
  reward: a group DAPO drops), odd tasks pay the reply's length (the members differ).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from accelerate_train import _SingleTurn, fresh
from gymnasium.envs.registration import register, registry

from agents.training import TrainConfig, Trainer

# The toy task and budget every algorithm must learn within (the GRPO test's setting, shorter).
DIGIT_TASK = dict(
    env="ArftTestDigit-v0",
    env_kwargs={"digits": "37"},
    group_size=8,
    groups_per_step=4,
    max_new_tokens=3,
    max_turns=1,
    learning_rate=1e-2,
    lr_schedule="constant",
    save_every=0,
    sample_every=0,
    report_to=("none",),
    progress_bar=False,
    log_entropy=False,
)


def train(algo: str, policy, output: Path, steps: int, **overrides) -> list[dict]:
    """Train ``fresh(policy)`` with ``algo`` on the digit task; the metrics lines."""
    values = {**DIGIT_TASK, "algo": algo, "output": str(output), "steps": steps, **overrides}
    trainer = Trainer(TrainConfig.from_dict(values), policy=fresh(policy))
    trainer.train()
    return [json.loads(x) for x in (output / "metrics.jsonl").read_text().splitlines()]


def assert_learns(rows: list[dict], window: int = 4) -> None:
    """The reward of the last steps is high and clearly above the first steps'."""
    rewards = [r["reward_mean"] for r in rows]
    first, last = np.mean(rewards[:window]), np.mean(rewards[-window:])
    assert last >= 0.8 and last >= first + 0.3, rewards


class PrizeEnv(_SingleTurn):
    """Reward: the prompt's prize / 2, whatever the reply."""

    def _question(self) -> str:
        self.prize = self.task % 3
        return f"Prize {self.prize}."

    def _reward(self, action: str) -> float:
        return self.prize / 2


class MixedEnv(_SingleTurn):
    """Even tasks: a fixed 0.5; odd tasks: the reply's length over 40, capped at 1."""

    def _question(self) -> str:
        return f"Task {self.task}: say something."

    def _reward(self, action: str) -> float:
        return 0.5 if self.task % 2 == 0 else min(len(action), 40) / 40


for _id, _cls in (("ArftTestPrize-v0", PrizeEnv), ("ArftTestMixed-v0", MixedEnv)):
    if _id not in registry:
        register(id=_id, entry_point=_cls, disable_env_checker=True)
