"""The algorithm registry and interface: names map to classes, each with its config section;
the loop's contract (advantages, loss, micro-batch weights, extra models) on GRPO."""

from __future__ import annotations

import pytest
import torch

from agents.algorithms import ALGORITHMS, GRPO, Algorithm, GRPOConfig
from agents.training.batch import MicroBatch
from agents.training.config import TrainConfig


def test_every_algorithm_is_registered_under_its_name_with_its_config_class():
    assert set(ALGORITHMS) == {"grpo", "ppo", "rloo", "reinforce_pp", "dapo", "gspo", "dr_grpo"}
    assert ALGORITHMS["grpo"] is GRPO
    for name, cls in ALGORITHMS.items():
        assert issubclass(cls, Algorithm) and cls.name == name
        assert issubclass(cls.config_class, TrainConfig)
        config = cls.config_class(report_to=("none",))
        assert config.algo == name
        assert all(config.help_text(f) for f in config.field_names())


def test_an_algorithm_refuses_another_algorithms_config():
    with pytest.raises(TypeError, match="GRPO needs a GRPOConfig, got TrainConfig"):
        GRPO(TrainConfig(report_to=("none",)))


def _micro(mask, advantages, minibatch_episodes=4, minibatch_tokens=10):
    b, length = mask.shape
    return MicroBatch(
        index=list(range(b)),
        trajectories=[],
        mask=mask,
        advantages=advantages,
        old_logprobs=torch.zeros(b, length),
        ref_logprobs=None,
        minibatch_episodes=minibatch_episodes,
        minibatch_tokens=minibatch_tokens,
    )


@pytest.mark.parametrize("aggregation, expected", [("token-mean", 0.3), ("dr-grpo", 0.5)])
def test_grpo_weighs_micro_batches_by_tokens_or_by_episodes(aggregation, expected):
    algo = GRPO(GRPOConfig(aggregation=aggregation, report_to=("none",)))
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert algo.micro_weight(_micro(mask, torch.zeros(2))) == pytest.approx(expected)


def test_grpo_loss_is_the_pure_policy_loss_with_the_configs_settings():
    from agents.algorithms.grpo import policy_loss

    cfg = GRPOConfig(beta=0.0, aggregation="dr-grpo", max_new_tokens=5, max_turns=2,
                     report_to=("none",))  # fmt: skip
    algo = GRPO(cfg)
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.1, -4.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    micro = _micro(mask, torch.tensor([1.0, -2.0]))
    micro.old_logprobs = logp.detach() - 0.1
    loss = algo.loss(micro, logp)
    expected = policy_loss(logp, micro.old_logprobs, micro.advantages, mask, None, beta=0.0,
                           aggregation="dr-grpo", max_tokens=10)  # fmt: skip
    assert loss.value.item() == pytest.approx(expected.loss.item())
    assert loss.means == {"policy_loss": pytest.approx(expected.policy_loss)}
    assert set(loss.token_means) == {"kl", "clip_fraction", "ratio_mean"}
    assert loss.token_means["ratio_mean"] == pytest.approx(expected.ratio_mean)


def test_grpo_needs_a_reference_only_with_a_kl_term(tiny_policy):
    with_kl = GRPO(GRPOConfig(beta=0.04, report_to=("none",)))
    models = with_kl.extra_models(tiny_policy)
    reference = models["reference"]
    assert reference is not tiny_policy.model
    assert not any(p.requires_grad for p in reference.parameters())
    assert GRPO(GRPOConfig(beta=0.0, report_to=("none",))).extra_models(tiny_policy) == {}
    lora = GRPO(GRPOConfig(beta=0.04, lora=True, report_to=("none",)))
    assert lora.uses_reference and lora.extra_models(tiny_policy) == {}  # adapters off instead
