"""REINFORCE++: token KL in the reward, returns-to-go and batch normalisation by hand;
learning the toy task."""

import math

import pytest
import torch
from learning import assert_learns, train

from agents.algorithms.reinforce_pp import reinforce_pp_advantages, token_kl


def test_token_kl_estimators():
    logp = torch.tensor([[math.log(0.5)]])
    ref = torch.tensor([[math.log(0.25)]])
    assert token_kl(logp, ref, "k1").item() == pytest.approx(math.log(2))
    assert token_kl(logp, ref, "k3").item() == pytest.approx(0.5 + math.log(2) - 1)
    with pytest.raises(ValueError, match="estimator"):
        token_kl(logp, ref, "k9")


def test_returns_to_go_with_the_kl_penalty_then_batch_normalised_by_hand():
    # two episodes: 3 model tokens (the 4th is padding) and 2 model tokens after a prompt token
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0]])
    outcome = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    kl = torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]])
    adv = reinforce_pp_advantages(outcome, kl, mask, beta=0.5)
    # rewards: ep 0: -0.5, -1, 1 -> returns -0.5, 0, 1; ep 1: -0.5, -0.5 -> -1, -0.5
    returns = [-0.5, 0.0, 1.0, -1.0, -0.5]
    assert adv.flatten().tolist() == pytest.approx(_whitened(returns, [0, 1, 2, 5, 6], 8))
    # the group baseline (groups of 1 here): each return minus its episode's first return
    grouped = reinforce_pp_advantages(outcome, kl, mask, beta=0.5, group_size=1)
    centred = [0.0, 0.5, 1.5, 0.0, 0.5]
    assert grouped.flatten().tolist() == pytest.approx(_whitened(centred, [0, 1, 2, 5, 6], 8))


def _whitened(values, positions, size):
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    out = [0.0] * size
    for pos, v in zip(positions, values, strict=True):
        out[pos] = (v - mean) / (std + 1e-8)
    return out


def test_reinforce_pp_raises_the_reward_of_the_toy_task(tiny_policy, tmp_path):
    assert_learns(train("reinforce_pp", tiny_policy, tmp_path, 30))
