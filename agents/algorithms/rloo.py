"""RLOO: REINFORCE with a leave-one-out baseline (Ahmadian et al. 2024, "Back to Basics").

Each completion's baseline is the mean reward of the *other* members of its group, so the
baseline never contains the completion's own reward (unbiased) and no value model is needed:

    A_i = R_i - (Σ_{j≠i} R_j) / (G - 1) = G/(G-1) · (R_i - mean_g)

The update is the clipped surrogate of :func:`agents.algorithms.grpo.policy_loss` (with one
update per step the ratio is 1 and the loss is plain REINFORCE), with an optional β·k3 KL to
a frozen reference, reduced as GRPO's ``aggregation`` says. Shapes: B = completions (groups
of G contiguous), T = tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from agents.algorithms.base import Algorithm, Loss, Scores, algo_option, episode_returns
from agents.algorithms.group import SurrogateConfig, aggregation_weight, same_option
from agents.algorithms.grpo import GRPOConfig, surrogate_loss

if TYPE_CHECKING:
    from agents.rollout import Trajectory
    from agents.training.batch import MicroBatch


def leave_one_out_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """``R_i`` minus the mean of the other ``G - 1`` rewards of its group.

    rewards: (B,), B = n_groups × group_size, groups contiguous. Returns (B,).
    """
    if rewards.ndim != 1 or rewards.numel() % group_size or group_size < 2:
        raise ValueError(
            f"rewards must be 1-D with a multiple of group_size={group_size} (>= 2) entries, "
            f"got shape {tuple(rewards.shape)}"
        )
    grouped = rewards.view(-1, group_size)  # (n_groups, G)
    others = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)  # (n_groups, G)
    return (grouped - others).reshape(-1)


@dataclass
class RLOOConfig(SurrogateConfig):
    """An RLOO run: the shared config, the surrogate's options (β = 0: no reference) and
    GRPO's loss reduction."""

    algo: str = algo_option("rloo")
    aggregation: str = same_option(GRPOConfig, "aggregation", "seq-mean-token-mean")


class RLOO(Algorithm):
    """Leave-one-out advantages (:func:`leave_one_out_advantages`) and the clipped surrogate."""

    name = "rloo"
    config_class = RLOOConfig
    config: RLOOConfig

    kl_weight_field = "beta"

    def advantages(
        self, trajectories: Sequence[Trajectory], scores: Scores | None = None
    ) -> torch.Tensor:
        returns = episode_returns(trajectories)
        return leave_one_out_advantages(returns, self.config.group_size)

    def loss(self, micro: MicroBatch, logprobs: torch.Tensor) -> Loss:
        cfg = self.config
        return surrogate_loss(
            micro, logprobs, beta=cfg.beta, clip_low=cfg.clip_low, clip_high=cfg.clip_high,
            aggregation=cfg.aggregation, max_tokens=cfg.max_new_tokens * cfg.max_turns,
        )  # fmt: skip

    def micro_weight(self, micro: MicroBatch) -> float:
        return aggregation_weight(micro, self.config.aggregation)
