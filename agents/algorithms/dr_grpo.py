"""Dr. GRPO: GRPO without its two biases (Liu et al. 2025, "Understanding R1-Zero-Like
Training").

GRPO divides each group's centred rewards by the group's std (questions that are too easy or
too hard, with a small std, weigh more) and each completion's token sum by its own length
(long wrong answers are penalised less per token). Dr. GRPO drops both:

    A_i    = R_i - mean_g                           (no std scaling)
    loss   = Σ_i Σ_t loss_it / (B · N)              (N a constant: the token budget)

Named an algorithm of its own so that the run says what it is; its config has no switch back
to the biased forms. Shapes: B = completions, T = tokens; the maths is
:func:`dr_grpo_advantages` and :func:`agents.algorithms.grpo.aggregate` ("dr-grpo").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from agents.algorithms.base import Algorithm, Loss, Scores, algo_option, episode_returns
from agents.algorithms.group import SurrogateConfig
from agents.algorithms.grpo import group_advantages, surrogate_loss
from agents.training.config import option

if TYPE_CHECKING:
    from agents.rollout import Trajectory
    from agents.training.batch import MicroBatch


def dr_grpo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """``R_i - mean_g``: (B,) -> (B,), groups of ``group_size`` contiguous."""
    return group_advantages(rewards, group_size, scale=False)


@dataclass
class DrGRPOConfig(SurrogateConfig):
    """A Dr. GRPO run: the shared config, the surrogate's options (β = 0: no reference) and
    the normaliser."""

    algo: str = algo_option("dr_grpo")
    normaliser_tokens: int | None = option(
        None,
        "the constant N the per-episode token sums are divided by (None: the token budget, "
        "max_new_tokens × max_turns)",
    )

    def _problems(self) -> list[str]:
        p = super()._problems()
        if self.normaliser_tokens is not None and self.normaliser_tokens < 1:
            p.append(f"normaliser_tokens must be >= 1 or None, got {self.normaliser_tokens}")
        return p


class DrGRPO(Algorithm):
    """Unscaled group advantages and the sum-over-a-constant surrogate."""

    name = "dr_grpo"
    config_class = DrGRPOConfig
    config: DrGRPOConfig

    kl_weight_field = "beta"

    def advantages(
        self, trajectories: Sequence[Trajectory], scores: Scores | None = None
    ) -> torch.Tensor:
        returns = episode_returns(trajectories)
        return dr_grpo_advantages(returns, self.config.group_size)

    def loss(self, micro: MicroBatch, logprobs: torch.Tensor) -> Loss:
        cfg = self.config
        normaliser = cfg.normaliser_tokens or cfg.max_new_tokens * cfg.max_turns
        return surrogate_loss(
            micro, logprobs, beta=cfg.beta, clip_low=cfg.clip_low, clip_high=cfg.clip_high,
            aggregation="dr-grpo", max_tokens=normaliser,
        )  # fmt: skip
