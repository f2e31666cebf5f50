"""DAPO: overlong shaping, the group filter and the clip-higher loss by hand; dynamic sampling
refilling the batch in the loop; learning the toy task."""

import math

import pytest
import torch
from accelerate_train import fresh
from learning import DIGIT_TASK, assert_learns, train

from agents.algorithms import DAPO, DAPOConfig
from agents.algorithms.dapo import all_equal_groups, overlong_penalty
from agents.training import TrainConfig, Trainer
from agents.training.batch import MicroBatch


def test_overlong_penalty_by_hand():
    lengths = torch.tensor([5, 6, 7, 8, 10, 12])
    # L_max 10, L_cache 4: free up to 6, then (6 - L) / 4, at least -1
    assert overlong_penalty(lengths, 10, 4).tolist() == [0.0, 0.0, -0.25, -0.5, -1.0, -1.0]
    assert overlong_penalty(lengths, 10, 0).tolist() == [0.0] * 6


def test_groups_whose_rewards_are_all_equal():
    flags = all_equal_groups(torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0]), 3)
    assert flags.tolist() == [True, False]


def test_clip_higher_token_mean_loss_by_hand():
    algo = DAPO(DAPOConfig(report_to=("none",)))  # ε_low 0.2, ε_high 0.28
    logp = torch.tensor([[math.log(1.5), math.log(0.5)]], requires_grad=True)
    micro = MicroBatch([0], [], torch.ones(1, 2), torch.tensor([1.0]), torch.zeros(1, 2), None,
                       1, 2)  # fmt: skip
    loss = algo.loss(micro, logp)
    # token 0: ratio 1.5 clipped at 1.28 (not 1.2); token 1: ratio 0.5, A > 0: unclipped 0.5
    assert loss.value.item() == pytest.approx((-1.28 - 0.5) / 2)
    assert loss.token_means["clip_fraction"] == pytest.approx(0.5)


def _dapo(tmp_path, env, **overrides):
    values = {**DIGIT_TASK, "algo": "dapo", "env": env, "env_kwargs": {}, "output": str(tmp_path),
              "steps": 1, "groups_per_step": 2, "max_new_tokens": 6, **overrides}  # fmt: skip
    return TrainConfig.from_dict(values)


def test_dynamic_sampling_refills_the_batch_with_groups_that_differ(tiny_policy, tmp_path):
    trainer = Trainer(
        _dapo(tmp_path, "ArftTestMixed-v0", max_refills=20), policy=fresh(tiny_policy)
    )
    trainer.setup()
    trainer._prepare_rl()
    dropped = 0
    for step in range(1, 4):
        batch = trainer.rollout(step)
        assert len(batch) == 16 and [t.group for t in batch] == [
            g for g in (0, 1) for _ in range(8)
        ]
        returns = torch.tensor([t.episode_return for t in batch])
        assert not all_equal_groups(returns, 8).any()  # every kept group teaches something
        stats = trainer._sampling_stats
        assert stats["sampling/filled_with_dropped"] == 0
        dropped += stats["sampling/dropped_groups"]
    assert dropped > 0  # even tasks (fixed reward) were drawn and dropped
    trainer.close()


def test_dynamic_sampling_is_bounded_and_keeps_the_batch_size(tiny_policy, tmp_path):
    # every group of ArftTestPrize-v0 has equal rewards: the refills cannot help
    config = _dapo(tmp_path, "ArftTestPrize-v0", max_refills=2, steps=2)
    trainer = Trainer(config, policy=fresh(tiny_policy))
    metrics = trainer.train()
    assert metrics["episodes"] == 16  # as many episodes (and micro-batches) as without a filter
    assert metrics["sampling/refill_rollouts"] == 2
    assert metrics["sampling/dropped_groups"] == 2 + 2 * 2  # the rollout's 2, 2 per refill
    assert metrics["sampling/filled_with_dropped"] == 2 and metrics["sampling/kept_share"] == 0


def test_dapo_raises_the_reward_of_the_toy_task(tiny_policy, tmp_path):
    assert_learns(train("dapo", tiny_policy, tmp_path, 30))
