"""DAPO: Decoupled clip and Dynamic sAmpling Policy Optimization (Yu et al. 2025).

GRPO's group-normalised advantages with four changes:

- **clip-higher**: the ratio is clipped to [1-ε_low, 1+ε_high] with ε_high > ε_low, so a
  token of low probability can still grow (less entropy collapse);
- **dynamic sampling**: a group whose rewards are all equal has zero advantages and teaches
  nothing; such groups are dropped and more groups are rolled out to refill the batch
  (:meth:`DAPO.keep_groups`; the loop bounds the refills by ``max_refills`` and, if the batch
  is still short, completes it with dropped groups so that every process keeps the same
  number of micro-batches, see :mod:`agents.algorithms.base`);
- **token-level loss**: every model token of the batch weighs the same (``token-mean``);
- **overlong reward shaping**: a turn whose length enters the last ``L_cache`` tokens of the
  budget ``L_max`` is penalised linearly, and one that hit the budget by -1
  (:func:`overlong_penalty`), times ``overlong_penalty_factor``;

and no KL term by default. Shapes: B completions, T tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from agents.algorithms.base import Algorithm, Loss, Scores, algo_option, episode_returns
from agents.algorithms.group import SurrogateConfig, aggregation_weight
from agents.algorithms.grpo import group_advantages, surrogate_loss
from agents.training.config import option

if TYPE_CHECKING:
    from agents.rollout import Trajectory
    from agents.training.batch import MicroBatch


def overlong_penalty(lengths: torch.Tensor, max_tokens: int, buffer: int) -> torch.Tensor:
    """DAPO's soft overlong punishment of responses of ``lengths`` tokens, (n,) -> (n,):

        0                                  if L <= L_max - L_cache
        (L_max - L_cache - L) / L_cache    if L_max - L_cache < L <= L_max
        -1                                 if L > L_max

    A turn is cut at ``max_tokens`` here, so a turn of exactly ``max_tokens`` tokens is the
    one that ran out (-1 from the formula's middle case, at its end). ``buffer = 0`` turns the
    shaping off.
    """
    lengths = lengths.to(torch.float32)
    if buffer <= 0:
        return torch.zeros_like(lengths)
    start = max_tokens - buffer
    soft = (start - lengths) / buffer
    return torch.where(lengths <= start, torch.zeros_like(lengths), soft.clamp(min=-1.0))


def all_equal_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Which groups have every reward equal (no learning signal): (B,) -> (n_groups,) bool."""
    grouped = rewards.view(-1, group_size)  # (n_groups, G)
    return (grouped == grouped[:, :1]).all(dim=1)


@dataclass
class DAPOConfig(SurrogateConfig):
    """A DAPO run: the shared config, the surrogate's options and DAPO's own (the paper's
    defaults)."""

    algo: str = algo_option("dapo")
    beta: float = option(0.0, "weight of the k3 KL to the reference model (DAPO: 0)")
    clip_low: float = option(0.2, "ratio clip range below 1 (ε_low, DAPO: 0.2)")
    clip_high: float = option(0.28, "ratio clip range above 1 (ε_high, DAPO: 0.28)")
    dynamic_sampling: bool = option(
        True, "drop groups whose rewards are all equal and roll out more to refill the batch"
    )
    max_refills: int = option(
        3, "extra rollouts per step at most to refill dropped groups (bounds the step's cost)"
    )
    overlong_buffer: int | None = option(
        None,
        "L_cache: the last tokens of a turn's budget (max_new_tokens) where the length is "
        "penalised linearly (None: a quarter of max_new_tokens; 0: no shaping)",
    )
    overlong_penalty_factor: float = option(1.0, "weight of the overlong penalty in the reward")

    def _problems(self) -> list[str]:
        p = super()._problems()
        if self.max_refills < 0:
            p.append(f"max_refills must be >= 0, got {self.max_refills}")
        buffer = self.overlong_buffer
        if buffer is not None and not 0 <= buffer <= self.max_new_tokens:
            p.append(
                f"overlong_buffer must be in [0, max_new_tokens={self.max_new_tokens}] or None, "
                f"got {buffer}"
            )
        if self.overlong_penalty_factor < 0:
            p.append(f"overlong_penalty_factor must be >= 0, got {self.overlong_penalty_factor}")
        return p

    @property
    def buffer_tokens(self) -> int:
        """L_cache in tokens."""
        return self.max_new_tokens // 4 if self.overlong_buffer is None else self.overlong_buffer


class DAPO(Algorithm):
    """Group advantages of overlong-shaped returns, clip-higher token-mean surrogate, and
    dynamic sampling."""

    name = "dapo"
    config_class = DAPOConfig
    config: DAPOConfig

    kl_weight_field = "beta"

    @property
    def max_refills(self) -> int:
        return self.config.max_refills if self.config.dynamic_sampling else 0

    def keep_groups(self, trajectories: Sequence[Trajectory]) -> list[bool] | None:
        """Groups with some spread of (unshaped) rewards; None without dynamic sampling."""
        if not self.config.dynamic_sampling:
            return None
        returns = episode_returns(trajectories)
        return (~all_equal_groups(returns, self.config.group_size)).tolist()

    def shaped_returns(self, trajectories: Sequence[Trajectory]) -> torch.Tensor:
        """Each episode's return plus the overlong penalty of each of its turns: (B,)."""
        cfg = self.config
        out = []
        for t in trajectories:
            lengths = torch.tensor([end - start for start, end in t.turn_spans])
            penalty = overlong_penalty(lengths, cfg.max_new_tokens, cfg.buffer_tokens)
            out.append(t.episode_return + cfg.overlong_penalty_factor * float(penalty.sum()))
        return torch.tensor(out, dtype=torch.float32)

    def advantages(
        self, trajectories: Sequence[Trajectory], scores: Scores | None = None
    ) -> torch.Tensor:
        return group_advantages(self.shaped_returns(trajectories), self.config.group_size)

    def loss(self, micro: MicroBatch, logprobs: torch.Tensor) -> Loss:
        cfg = self.config
        return surrogate_loss(
            micro, logprobs, beta=cfg.beta, clip_low=cfg.clip_low, clip_high=cfg.clip_high,
            aggregation="token-mean",
        )  # fmt: skip

    def micro_weight(self, micro: MicroBatch) -> float:
        return aggregation_weight(micro, "token-mean")
