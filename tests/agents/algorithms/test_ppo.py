"""PPO's GAE and clipped value loss against hand-computed values."""

import pytest
import torch

from agents.algorithms.ppo import gae, value_loss


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.6, 0.7, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    d2 = 1.0 - 0.7  # last valid step: next value 0
    d1 = 0.0 + 0.9 * 0.7 - 0.6
    d0 = 0.0 + 0.9 * 0.6 - 0.5
    a2 = d2
    a1 = d1 + 0.72 * a2
    a0 = d0 + 0.72 * a1
    assert adv.tolist()[0] == pytest.approx([a0, a1, a2, 0.0])
    assert ret.tolist()[0][:3] == pytest.approx([a0 + 0.5, a1 + 0.6, a2 + 0.7])


def test_value_loss_clipping():
    values = torch.tensor([[2.0]])
    old = torch.tensor([[1.0]])
    returns = torch.tensor([[1.0]])
    # unclipped (2-1)^2 = 1; clipped value 1.2 -> 0.04; max = 1 -> 0.5
    assert value_loss(values, old, returns, torch.ones(1, 1), clip=0.2).item() == pytest.approx(0.5)
    returns = torch.tensor([[3.0]])
    # unclipped 1; clipped (1.2-3)^2 = 3.24 -> max 3.24 -> 1.62
    assert value_loss(values, old, returns, torch.ones(1, 1), clip=0.2).item() == pytest.approx(
        1.62
    )
