"""REINFORCE++ (Hu 2025): REINFORCE with PPO's tricks and no critic.

The KL to the reference is not a loss term but a per-token reward, the returns are plain
(discounted) sums of those rewards, and the advantages are normalised over the whole batch
instead of per group (no group baseline: the normalisation is the baseline):

    r_t   = -β · KL_t  (+ the turn's reward at the turn's last model token)
    KL_t  = old_logp_t - ref_logp_t            (k1, at sampling time) or k3
    G_t   = Σ_{s >= t} γ^{s-t} r_s             (over the episode's model tokens)
    A_t   = (G_t - mean(G)) / (std(G) + eps)   (mean and std over the batch's model tokens)

and the update is the clipped token-mean surrogate. ``baseline='group'`` subtracts the group's
mean return first ("REINFORCE++-baseline", for the small groups of a multi-sample run).
Shapes: B episodes, T tokens (one row per episode, 0 off its model tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from agents.algorithms.base import Algorithm, Loss, Scores, algo_option
from agents.algorithms.group import SurrogateConfig, aggregation_weight
from agents.algorithms.grpo import surrogate_loss
from agents.algorithms.ppo import discounted_returns, masked_whiten, turn_end_rewards
from agents.training.batch import pad
from agents.training.config import option

if TYPE_CHECKING:
    from agents.rollout import Trajectory
    from agents.training.batch import MicroBatch

KL_ESTIMATORS = ("k1", "k3")
BASELINES = ("none", "group")


def token_kl(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token KL(π‖π_ref) estimate from sampled tokens: k1 = logp - ref, or k3 (>= 0).
    (B,T) -> (B,T)."""
    if estimator == "k1":
        return logp - ref_logp
    if estimator == "k3":
        delta = ref_logp - logp
        return torch.exp(delta) - delta - 1
    raise ValueError(f"estimator must be one of {KL_ESTIMATORS}, got {estimator!r}")


def reinforce_pp_advantages(
    outcome: torch.Tensor,
    kl: torch.Tensor | None,
    mask: torch.Tensor,
    beta: float,
    gamma: float = 1.0,
    group_size: int | None = None,
) -> torch.Tensor:
    """REINFORCE++ advantages from per-token outcome rewards and KL.

    outcome: (B,T) the env's rewards placed on tokens (a turn's at its last model token);
    kl: (B,T) per-token KL or None (β = 0); mask: (B,T) model tokens. With ``group_size``,
    each episode's return-to-go is first centred on its group's mean (REINFORCE++-baseline).
    Returns (B,T), batch-normalised over the model tokens, 0 elsewhere.
    """
    rewards = outcome if kl is None or beta == 0 else outcome - beta * kl * mask
    returns = discounted_returns(rewards, mask, gamma)  # (B,T)
    if group_size is not None:
        # the group's mean return at each episode's first model token, as the baseline
        first = returns.gather(1, mask.to(torch.long).argmax(dim=1, keepdim=True)).squeeze(1)
        group_mean = first.view(-1, group_size).mean(dim=1).repeat_interleave(group_size)
        returns = (returns - group_mean[:, None]) * mask
    return masked_whiten(returns, mask)


@dataclass
class ReinforcePPConfig(SurrogateConfig):
    """A REINFORCE++ run: the shared config, the surrogate's clip range and its options (its
    β weighs a KL in the reward, not in the loss)."""

    algo: str = algo_option("reinforce_pp")
    beta: float = option(0.01, "weight of the per-token KL penalty in the reward (0: none)")
    kl_estimator: str = option(
        "k1", "the KL in the reward: k1 (logp - ref, unbiased) or k3 (>= 0)", choices=KL_ESTIMATORS
    )
    gamma: float = option(1.0, "discount of the return-to-go over tokens")
    baseline: str = option(
        "none",
        "none (REINFORCE++: batch normalisation only) or group (REINFORCE++-baseline: the "
        "group's mean return subtracted first)",
        choices=BASELINES,
    )

    def _problems(self) -> list[str]:
        p = super()._problems()
        if not 0 < self.gamma <= 1:
            p.append(f"gamma must be in (0, 1], got {self.gamma}")
        return p


class ReinforcePP(Algorithm):
    """Token KL in the reward, batch-normalised returns-to-go, clipped token-mean surrogate."""

    name = "reinforce_pp"
    config_class = ReinforcePPConfig
    config: ReinforcePPConfig

    kl_weight_field = "beta"

    @property
    def reference_in_advantages(self) -> bool:
        return self.uses_reference

    def advantages(
        self, trajectories: Sequence[Trajectory], scores: Scores | None = None
    ) -> list[torch.Tensor]:
        cfg = self.config
        length = max(len(t.input_ids) for t in trajectories)
        mask = pad([torch.tensor(t.assistant_mask, dtype=torch.float32) for t in trajectories],
                   length)  # fmt: skip
        outcome = pad([turn_end_rewards(t) for t in trajectories], length)  # (B,T)
        kl = None
        if cfg.beta > 0:
            if scores is None or scores.reference is None:
                raise ValueError(
                    "reinforce_pp with beta > 0 needs the reference's log-probs before its "
                    "advantages (the loop passes them as scores.reference)"
                )
            old = pad([torch.tensor(t.old_logprobs, dtype=torch.float32) for t in trajectories],
                      length)  # fmt: skip
            kl = token_kl(old, pad(scores.reference, length), cfg.kl_estimator) * mask
        group = cfg.group_size if cfg.baseline == "group" else None
        adv = reinforce_pp_advantages(outcome, kl, mask, cfg.beta, cfg.gamma, group)
        return [adv[i, : len(t.input_ids)] for i, t in enumerate(trajectories)]

    def loss(self, micro: MicroBatch, logprobs: torch.Tensor) -> Loss:
        cfg = self.config
        # the KL is in the reward: no KL term in the loss (beta=0 here), but still logged
        return surrogate_loss(
            micro, logprobs, beta=0.0, clip_low=cfg.clip_low, clip_high=cfg.clip_high,
            aggregation="token-mean",
        )  # fmt: skip

    def micro_weight(self, micro: MicroBatch) -> float:
        return aggregation_weight(micro, "token-mean")
