"""The warm start by micro-batches: the same gradients as one pass over the whole batch, and
no forward pass larger than the micro-batch (which is what bounds its peak memory)."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
from accelerate_train import fresh

import agents.demo  # noqa: F401  (registers EasyMATCoding-v0)
from agents.training.config import TrainConfig
from agents.training.warm_start import expert_episode, sft_backward, sft_loss, sft_micro_batch


@pytest.fixture(scope="module")
def episodes(tiny_policy):
    env = gym.make("EasyMATCoding-v0")
    out = [expert_episode(tiny_policy, env, seed=s) for s in range(5)]
    env.close()
    return out


def _gradients(policy, episodes, micro, accelerator=None):
    policy.model.zero_grad(set_to_none=True)
    loss, tokens = sft_backward(policy, episodes, micro, accelerator=accelerator)
    grads = {n: p.grad.clone() for n, p in policy.model.named_parameters() if p.grad is not None}
    return loss, tokens, grads


@pytest.mark.parametrize("micro", [1, 2, 3])
def test_micro_batches_give_the_gradients_of_one_pass(tiny_policy, episodes, micro):
    policy = fresh(tiny_policy)
    policy.model.eval()  # no dropout: the passes must see the same function
    whole, _ = sft_loss(policy, episodes)
    policy.model.zero_grad(set_to_none=True)
    whole.backward()
    expected = {n: p.grad.clone() for n, p in policy.model.named_parameters() if p.grad is not None}

    loss, tokens, grads = _gradients(policy, episodes, micro)
    assert tokens == sum(sum(e.assistant_mask) for e in episodes)
    assert loss.item() == pytest.approx(whole.item(), rel=1e-5)
    assert grads.keys() == expected.keys()
    for name, g in grads.items():
        torch.testing.assert_close(g, expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_through_an_accelerator_the_gradients_are_the_same(tiny_policy, episodes):
    from agents.training.distributed import make_accelerator

    policy = fresh(tiny_policy)
    policy.model.eval()
    _, _, plain = _gradients(policy, episodes, len(episodes))
    accelerator = make_accelerator(TrainConfig(mixed_precision="no"))
    _, _, accelerated = _gradients(policy, episodes, 2, accelerator=accelerator)
    for name, g in accelerated.items():
        torch.testing.assert_close(g, plain[name], rtol=1e-4, atol=1e-6, msg=name)


def test_no_forward_pass_is_larger_than_the_micro_batch(tiny_policy, episodes):
    policy = fresh(tiny_policy)
    rows = []
    handle = policy.model.register_forward_pre_hook(
        lambda _m, _args, kwargs: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        sft_backward(policy, episodes, 2)
    finally:
        handle.remove()
    assert rows == [2, 2, 1]


def test_the_micro_batch_follows_gradient_accumulation_unless_set():
    base = dict(sft_steps=1, sft_batch_size=8, group_size=4, groups_per_step=2)
    assert sft_micro_batch(TrainConfig(**base)) == 8
    assert sft_micro_batch(TrainConfig(**base, gradient_accumulation_steps=4)) == 2
    assert sft_micro_batch(TrainConfig(**base, gradient_accumulation_steps=8)) == 1
    assert sft_micro_batch(TrainConfig(**base, sft_micro_batch_size=3)) == 3
    with pytest.raises(ValueError, match="sft_micro_batch_size must be >= 1"):
        TrainConfig(**base, sft_micro_batch_size=0)
