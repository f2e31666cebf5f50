"""RLOO: the leave-one-out advantages by hand, and learning the toy task."""

import pytest
import torch
from learning import assert_learns, train

from agents.algorithms.rloo import leave_one_out_advantages


def test_leave_one_out_advantages_by_hand():
    rewards = torch.tensor([1.0, 0.0, 2.0, 4.0, 4.0, 1.0])
    # group 1: 1-(0+2)/2, 0-(1+2)/2, 2-(1+0)/2; group 2: 4-(4+1)/2 twice, 1-(4+4)/2
    assert leave_one_out_advantages(rewards, 3).tolist() == [0.0, -1.5, 1.5, 1.5, 1.5, -3.0]
    with pytest.raises(ValueError, match="multiple of group_size"):
        leave_one_out_advantages(torch.ones(5), 2)


def test_rloo_raises_the_reward_of_the_toy_task(tiny_policy, tmp_path):
    assert_learns(train("rloo", tiny_policy, tmp_path, 30))
