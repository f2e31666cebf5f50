"""The easy MAT-Coding source (``EasyMATCoding-v0``): a fixed held-out set that is never
sampled, and short gold turns that still earn the full return in the real env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import arft_envs  # noqa: F401
from arft_envs.experts import ScriptedExpert
from arft_envs.report import play_episode
from arft_envs.tasks.coding.easy import DEFAULT_DEGRADATIONS, ENV_ID, EasyCoding


def test_holdout_is_fixed_and_never_sampled():
    a, b = EasyCoding(holdout=12), EasyCoding(holdout=12)
    assert a.holdout_ids == b.holdout_ids and len(set(a.holdout_ids)) == 12
    rng = np.random.default_rng(0)
    drawn = [a.sample(rng) for _ in range(200)]
    assert not {t.id for t in drawn} & set(a.holdout_ids)
    assert {t.meta["degradations"][0] for t in drawn} == set(a.kinds) == set(DEFAULT_DEGRADATIONS)


@pytest.mark.parametrize("kind", ["dark", "overexposure", "blur", "noise", "none"])
def test_short_gold_turns_earn_the_full_return(kind):
    env = gym.make(ENV_ID, degradations=[kind], holdout=1)
    record = play_episode(env, ScriptedExpert(), seed=5)
    full = 4.0 if kind == "none" else 6.0  # format + accuracy per gold step
    assert sum(record.rewards) == full
    task = env.unwrapped.tasks.get(record.info["task_id"])
    assert task.meta["degradations"][0] == kind
    assert all(len(step) < 400 for step in task.meta["gold_steps"])  # a few words and the code
    env.close()


def test_the_held_out_tasks_can_be_played_by_id():
    env = gym.make("arft_envs:" + ENV_ID, holdout=3)
    held_out = env.unwrapped.tasks.holdout_ids
    _, info = env.reset(seed=0, options={"task_id": held_out[0]})
    assert info["task_id"] == held_out[0]
    env.close()


def test_unknown_degradations_are_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="degradations must be among"):
        EasyCoding(["sepia"])
