"""GSPO: Group Sequence Policy Optimization (Zheng et al. 2025).

GRPO's ratio is per token, so one sequence's update is clipped token by token and its noise
grows with the length. GSPO takes the importance ratio of the whole sequence, as the
geometric mean of its token ratios, and clips that:

    s_i    = exp( (1/|y_i|) Σ_t (logp_it - old_logp_it) )                 (per sequence)
    loss   = -(1/B) Σ_i min(s_i·A_i, clip(s_i, 1-ε_low, 1+ε_high)·A_i)   (+ β·KL, optional)

with GRPO's group-normalised advantages A_i. Because s_i is a mean over ~|y| tokens its
spread is small, hence the paper's small clip ranges (3e-4, 4e-4). With one update per step
s_i = 1 and the gradient is GRPO's sequence-mean one. Shapes: B completions, T tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from agents.algorithms.base import Algorithm, Loss, Scores, algo_option, episode_returns
from agents.algorithms.group import SurrogateConfig
from agents.algorithms.grpo import group_advantages, k3_kl
from agents.training.config import option

if TYPE_CHECKING:
    from agents.rollout import Trajectory
    from agents.training.batch import MicroBatch


def sequence_ratio(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The length-normalised sequence importance ratio ``s_i``: (B,T) x3 -> (B,)."""
    m = mask.to(logp.dtype)
    log_ratio = ((logp - old_logp.detach()) * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)  # (B,)
    return torch.exp(log_ratio)


@dataclass
class GSPOOutput:
    loss: torch.Tensor  # scalar, differentiable
    policy_loss: float  # the sequence surrogate part
    kl: float  # mean k3 KL over model tokens (0 without a reference)
    clip_fraction: float  # share of sequences whose clipped term was active
    ratio_mean: float  # mean of s_i


def gspo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    ref_logp: torch.Tensor | None = None,
    beta: float = 0.0,
    clip_low: float = 3e-4,
    clip_high: float = 4e-4,
) -> GSPOOutput:
    """The sequence-level clipped surrogate, a mean over sequences, plus β times each
    sequence's mean k3 KL (averaged over sequences).

    logp, old_logp, ref_logp, mask: (B,T); advantages: (B,).
    """
    if beta > 0 and ref_logp is None:
        raise ValueError("beta > 0 needs ref_logp (the reference model's log-probs)")
    ratio = sequence_ratio(logp, old_logp, mask)  # (B,)
    adv = advantages.detach()
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - clip_low, 1 + clip_high) * adv
    surrogate = -torch.minimum(unclipped, clipped)  # (B,)
    loss = surrogate.mean()
    kl_mean = 0.0
    m = mask.to(logp.dtype)
    if ref_logp is not None:
        kl = k3_kl(logp, ref_logp.detach())  # (B,T)
        per_seq = (kl * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)  # (B,)
        if beta > 0:
            loss = loss + beta * per_seq.mean()
        kl_mean = float((kl.detach() * m).sum() / m.sum().clamp(min=1))
    with torch.no_grad():
        clip_frac = float((clipped < unclipped).to(logp.dtype).mean())
    return GSPOOutput(loss, float(surrogate.detach().mean()), kl_mean, clip_frac,
                      float(ratio.detach().mean()))  # fmt: skip


@dataclass
class GSPOConfig(SurrogateConfig):
    """A GSPO run: the shared config and the surrogate's options, with the sequence ratio's
    clip ranges (the paper's defaults; β = 0: no reference)."""

    algo: str = algo_option("gspo")
    clip_low: float = option(3e-4, "clip range of the sequence ratio below 1 (paper: 3e-4)")
    clip_high: float = option(4e-4, "clip range of the sequence ratio above 1 (paper: 4e-4)")


class GSPO(Algorithm):
    """Group-normalised advantages and :func:`gspo_loss`."""

    name = "gspo"
    config_class = GSPOConfig
    config: GSPOConfig

    kl_weight_field = "beta"

    def advantages(
        self, trajectories: Sequence[Trajectory], scores: Scores | None = None
    ) -> torch.Tensor:
        returns = episode_returns(trajectories)
        return group_advantages(returns, self.config.group_size)

    def loss(self, micro: MicroBatch, logprobs: torch.Tensor) -> Loss:
        cfg = self.config
        device = logprobs.device
        ref = micro.ref_logprobs
        out = gspo_loss(
            logprobs, micro.old_logprobs.to(device), micro.advantages.to(device), micro.mask,
            None if ref is None else ref.to(device), beta=cfg.beta, clip_low=cfg.clip_low,
            clip_high=cfg.clip_high,
        )  # fmt: skip
        return Loss(
            out.loss,
            means={
                "policy_loss": out.policy_loss,
                "clip_fraction": out.clip_fraction,
                "ratio_mean": out.ratio_mean,
            },
            token_means={"kl": out.kl},
        )
