"""GSPO: the sequence ratio and its clipping by hand; learning the toy task."""

import math

import pytest
import torch
from learning import assert_learns, train

from agents.algorithms.gspo import gspo_loss, sequence_ratio


def test_sequence_ratio_is_the_geometric_mean_of_the_token_ratios():
    logp = torch.tensor([[0.2, 0.4, 9.0]])
    old = torch.zeros(1, 3)
    mask = torch.tensor([[1, 1, 0]])  # the masked token's 9.0 does not count
    assert sequence_ratio(logp, old, mask).item() == pytest.approx(math.exp(0.3))


def test_gspo_loss_clips_whole_sequences_by_hand():
    logp = torch.tensor([[0.3, 0.3], [-0.5, -0.5], [0.1, 0.1]], requires_grad=True)
    old = torch.zeros(3, 2)
    mask = torch.ones(3, 2)
    adv = torch.tensor([1.0, -1.0, 2.0])
    out = gspo_loss(logp, old, adv, mask, clip_low=0.2, clip_high=0.2)
    # seq 0: s = e^0.3 = 1.35 > 1.2, A > 0: clipped, -1.2; seq 1: s = e^-0.5 = 0.61 < 0.8,
    # A < 0: clipped, -(0.8 · -1) = 0.8; seq 2: s = e^0.1 inside: -2 e^0.1
    expected = (-1.2 + 0.8 - 2 * math.exp(0.1)) / 3
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.clip_fraction == pytest.approx(2 / 3)
    (grad,) = torch.autograd.grad(out.loss, logp)
    # clipped sequences get no gradient; seq 2: d(-A s)/dlogp_t = -A s / |y| / B
    g2 = -2 * math.exp(0.1) / 2 / 3
    assert grad.flatten().tolist() == pytest.approx([0.0, 0.0, 0.0, 0.0, g2, g2], rel=1e-6)


def test_gspo_kl_term_is_a_mean_over_sequences_of_each_sequences_token_mean():
    logp = torch.tensor([[math.log(0.5), 0.0], [0.0, 0.0]])
    ref = torch.tensor([[math.log(0.25), 0.0], [0.0, 0.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    out = gspo_loss(logp, logp, torch.zeros(2), mask, ref, beta=0.5)
    kl = 0.5 + math.log(2) - 1  # k3 at delta = -log 2
    assert out.loss.item() == pytest.approx(0.5 * (kl / 2 + 0.0) / 2)
    assert out.kl == pytest.approx(kl / 3)


def test_gspo_raises_the_reward_of_the_toy_task(tiny_policy, tmp_path):
    assert_learns(train("gspo", tiny_policy, tmp_path, 30))
