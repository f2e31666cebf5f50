"""Dr. GRPO: unscaled advantages and the constant normaliser by hand; learning the toy task."""

import pytest
import torch
from learning import assert_learns, train

from agents.algorithms import DrGRPO, DrGRPOConfig
from agents.algorithms.dr_grpo import dr_grpo_advantages
from agents.training.batch import MicroBatch


def test_dr_grpo_advantages_are_not_divided_by_the_std():
    adv = dr_grpo_advantages(torch.tensor([1.0, 0.0, 2.0, 5.0, 5.0, 2.0]), 3)
    assert adv.tolist() == pytest.approx([0.0, -1.0, 1.0, 1.0, 1.0, -2.0])


def test_dr_grpo_loss_divides_token_sums_by_a_constant():
    algo = DrGRPO(DrGRPOConfig(normaliser_tokens=4, report_to=("none",)))
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, -0.5]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    micro = MicroBatch([0, 1], [], mask, torch.tensor([1.0, -0.5]), logp.detach(), None, 2, 3)
    loss = algo.loss(micro, logp)
    # ratio 1: per token -A_i; sum over model tokens (-1 -1 +0.5) / (B=2 · N=4)
    assert loss.value.item() == pytest.approx(-1.5 / 8)
    (grad,) = torch.autograd.grad(loss.value, logp)
    assert grad.flatten().tolist() == pytest.approx([-1 / 8, -1 / 8, 0.0, 0.5 / 8, 0.0, 0.0])
    # a named algorithm: no switch back to std scaling or per-length normalisation
    assert not {"scale_advantages", "aggregation"} & set(DrGRPOConfig.field_names())


def test_dr_grpo_raises_the_reward_of_the_toy_task(tiny_policy, tmp_path):
    assert_learns(train("dr_grpo", tiny_policy, tmp_path, 30))
