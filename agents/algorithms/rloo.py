"""RLOO: REINFORCE with a leave-one-out baseline (Ahmadian et al. 2024, "Back to Basics").

Each completion's baseline is the mean reward of the *other* members of its group, so the
baseline never contains the completion's own reward (unbiased) and no value model is needed:

    A_i = R_i - (Σ_{j≠i} R_j) / (G - 1) = G/(G-1) · (R_i - mean_g)

The update is the clipped surrogate of :func:`agents.algorithms.grpo.policy_loss` (with one
update per step the ratio is 1 and the loss is plain REINFORCE), with an optional β·k3 KL to
a frozen reference. Shapes: B = completions (groups of G contiguous), T = tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from agents.algorithms.base import Algorithm, Loss, Scores, algo_option, episode_returns
from agents.algorithms.grpo import AGGREGATIONS, policy_loss
from agents.training.config import TrainConfig, option

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
class RLOOConfig(TrainConfig):
    """An RLOO run: the shared config plus the surrogate's options."""

    algo: str = algo_option("rloo")
    beta: float = option(0.0, "weight of the k3 KL to the reference model (0: no reference)")
    aggregation: str = option(
        "seq-mean-token-mean",
        "loss reduction: seq-mean-token-mean (mean per episode, then over episodes), "
        "token-mean or dr-grpo (sum over a constant)",
        choices=AGGREGATIONS,
    )
    clip_low: float = option(0.2, "PPO clip range below 1 (active only with several updates)")
    clip_high: float | None = option(None, "PPO clip range above 1 (None: same as clip_low)")

    def _problems(self) -> list[str]:
        return super()._problems() + clip_problems(self.beta, self.clip_low, self.clip_high)


def clip_problems(beta: float, clip_low: float, clip_high: float | None) -> list[str]:
    """The checks of the surrogate's options shared by the group-baseline algorithms."""
    p = []
    if beta < 0:
        p.append(f"beta must be >= 0 (0 turns the KL term off), got {beta}")
    if not 0 < clip_low < 1:
        p.append(f"clip_low must be in (0, 1), got {clip_low}")
    if clip_high is not None and clip_high <= 0:
        p.append(f"clip_high must be > 0 or None, got {clip_high}")
    return p


def surrogate_loss(algo: Algorithm, micro: MicroBatch, logprobs: torch.Tensor, **settings) -> Loss:
    """:func:`policy_loss` on a micro-batch with ``settings`` (beta, clips, aggregation, …),
    as a :class:`Loss` with the statistics GRPO logs. Shared by the algorithms whose update
    is the clipped token surrogate."""
    device = logprobs.device
    ref = micro.ref_logprobs
    out = policy_loss(
        logprobs,
        micro.old_logprobs.to(device),
        micro.advantages.to(device),
        micro.mask,
        None if ref is None else ref.to(device),
        **settings,
    )
    return Loss(
        out.loss,
        means={"policy_loss": out.policy_loss},
        token_means={
            "kl": out.kl,
            "clip_fraction": out.clip_fraction,
            "ratio_mean": out.ratio_mean,
        },
    )


def token_weight(micro: MicroBatch) -> float:
    """A micro-batch's share of its minibatch's model tokens (for a token-mean loss)."""
    return float(micro.mask.sum()) / max(micro.minibatch_tokens, 1)


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
            self, micro, logprobs, beta=cfg.beta, clip_low=cfg.clip_low,
            clip_high=cfg.clip_high, aggregation=cfg.aggregation,
            max_tokens=cfg.max_new_tokens * cfg.max_turns,
        )  # fmt: skip

    def micro_weight(self, micro: MicroBatch) -> float:
        if self.config.aggregation == "token-mean":
            return token_weight(micro)
        return len(micro.index) / micro.minibatch_episodes
