"""GRPO's loss and advantage functions against hand-computed values."""

import math

import pytest
import torch

from agents.algorithms.grpo import (
    aggregate,
    entropy_from_logits,
    group_advantages,
    k3_kl,
    policy_loss,
    turn_advantages,
)


def test_group_advantages_scaled_and_unscaled():
    rewards = torch.tensor([1.0, 0.0, 2.0, 1.0, 5.0, 5.0])
    adv = group_advantages(rewards, group_size=3)
    # group 1: mean 1, unbiased std 1 -> (0, -1, 1)/(1+1e-4); group 2: mean 11/3, std 2.3094
    std2 = math.sqrt(((1 - 11 / 3) ** 2 + 2 * (5 - 11 / 3) ** 2) / 2)
    expected = [
        0.0,
        -1 / 1.0001,
        1 / 1.0001,
        (1 - 11 / 3) / (std2 + 1e-4),
        *[(5 - 11 / 3) / (std2 + 1e-4)] * 2,
    ]
    assert adv.tolist() == pytest.approx(expected, rel=1e-5)
    unscaled = group_advantages(rewards, group_size=3, scale=False)
    assert unscaled.tolist() == pytest.approx([0, -1, 1, 1 - 11 / 3, 5 - 11 / 3, 5 - 11 / 3])
    assert group_advantages(torch.ones(4), 4).tolist() == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="multiple of group_size"):
        group_advantages(torch.ones(5), 2)


def test_turn_advantages_compare_each_turn_with_the_same_turn_of_the_group():
    # one group of 3: turn 0 rewards (2, 1, 0); turn 1 reached by two, (1, 3); turn 2 by one
    rewards = [[2.0, 1.0, 5.0], [1.0, 3.0], [0.0]]
    out = turn_advantages(rewards, group_size=3, scale=False)
    assert out == [[1.0, -1.0, 0.0], [0.0, 1.0], [-1.0]]
    scaled = turn_advantages(rewards, group_size=3)
    # turn 0: unbiased std 1; turn 1: std sqrt(2)
    assert scaled[0][:2] == pytest.approx([1 / 1.0001, -1 / (math.sqrt(2) + 1e-4)], rel=1e-5)
    assert scaled[2] == pytest.approx([-1 / 1.0001], rel=1e-5)
    # two groups stay apart, and a single-turn batch is the episode-level GRPO
    flat = [[1.0], [0.0], [4.0], [4.0]]
    assert turn_advantages(flat, 2) == [[a] for a in group_advantages(torch.tensor(
        [1.0, 0.0, 4.0, 4.0]), 2).tolist()]  # fmt: skip
    with pytest.raises(ValueError, match="multiple of group_size"):
        turn_advantages(rewards, group_size=2)


def test_k3_kl_values():
    logp = torch.tensor([[0.0, math.log(0.5)]])
    ref = torch.tensor([[0.0, math.log(0.25)]])
    kl = k3_kl(logp, ref)
    # delta = log(0.25/0.5) = -log 2: exp(-log2) + log2 - 1 = 0.5 + 0.6931 - 1
    assert kl.tolist()[0] == pytest.approx([0.0, 0.5 + math.log(2) - 1])


def test_aggregations_by_hand():
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert aggregate(per_token, mask, "token-mean").item() == pytest.approx(10 / 4)
    assert aggregate(per_token, mask, "seq-mean-token-mean").item() == pytest.approx((2 + 4) / 2)
    assert aggregate(per_token, mask, "dr-grpo", max_tokens=5).item() == pytest.approx(10 / 10)
    with pytest.raises(ValueError, match="aggregation"):
        aggregate(per_token, mask, "mean-of-vibes")


def test_policy_loss_hand_computed_with_clipping_and_kl():
    logp = torch.tensor([[math.log(0.6), math.log(0.3)]])
    old = torch.tensor([[math.log(0.4), math.log(0.3)]])
    ref = torch.tensor([[math.log(0.5), math.log(0.3)]])
    mask = torch.ones(1, 2)
    out = policy_loss(
        logp, old, torch.tensor([2.0]), mask, ref, beta=0.1, clip_low=0.2, aggregation="token-mean"
    )
    # token 0: ratio 1.5 -> clipped to 1.2: surrogate -2.4; token 1: ratio 1: surrogate -2
    kl0 = 0.5 / 0.6 - math.log(0.5 / 0.6) - 1
    expected = ((-2.4 + 0.1 * kl0) + (-2.0)) / 2
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.clip_fraction == pytest.approx(0.5)
    assert out.kl == pytest.approx(kl0 / 2, rel=1e-5)
    # negative advantage: min picks the unclipped (more pessimistic) term for ratio > 1+eps
    neg = policy_loss(
        logp, old, torch.tensor([-1.0]), mask, None, beta=0.0, aggregation="token-mean"
    )
    assert neg.loss.item() == pytest.approx((1.5 + 1.0) / 2)
    with pytest.raises(ValueError, match="ref_logp"):
        policy_loss(logp, old, torch.tensor([1.0]), mask, None, beta=0.04)


def test_one_epoch_beta_zero_gradient_equals_reinforce_with_group_mean_baseline():
    torch.manual_seed(0)
    B, T, V = 4, 3, 5
    logits = torch.randn(B, T, V, requires_grad=True)
    tokens = torch.randint(V, (B, T))
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]])
    rewards = torch.tensor([1.0, 0.0, 0.5, 2.0])
    logp = torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    adv = group_advantages(rewards, group_size=2, scale=False)
    out = policy_loss(
        logp, logp.detach(), adv, mask, None, beta=0.0, aggregation="seq-mean-token-mean"
    )
    (grad,) = torch.autograd.grad(out.loss, logits, retain_graph=True)
    # REINFORCE with the group-mean baseline, same per-sequence token averaging
    baseline = rewards.view(2, 2).mean(1).repeat_interleave(2)
    m = mask.float()
    surrogate = -(((rewards - baseline).unsqueeze(1) * logp * m).sum(1) / m.sum(1)).mean()
    (expected,) = torch.autograd.grad(surrogate, logits)
    torch.testing.assert_close(grad, expected)


def test_entropy_of_uniform_and_peaked():
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]]])
    ent = entropy_from_logits(logits)
    assert ent[0, 0].item() == pytest.approx(math.log(4))
    assert ent[0, 1].item() == pytest.approx(0.0, abs=1e-6)
