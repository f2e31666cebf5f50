"""What the clipped-surrogate algorithms share: their three common options and the weight of a
micro-batch under a loss reduction.

GRPO, RLOO, DAPO, GSPO, Dr. GRPO and REINFORCE++ differ in their advantages (a group baseline,
a leave-one-out one, batch normalisation, …) and share their update: a clipped surrogate of
the importance ratio with an optional KL to a frozen reference. Each one's config section
subclasses :class:`SurrogateConfig` (β, ε_low, ε_high and their checks, written once) and
re-declares with :func:`same_option` only the defaults its paper changes, so that its own file
still shows every default it sets. The surrogate's maths is
:func:`agents.algorithms.grpo.policy_loss` (GSPO's sequence-level form is its own,
:func:`agents.algorithms.gspo.gspo_loss`); :func:`agents.algorithms.grpo.surrogate_loss` runs
it on one micro-batch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from agents.training.config import TrainConfig, option

if TYPE_CHECKING:
    from agents.training.batch import MicroBatch


def clip_problems(clip_low: float, clip_high: float | None) -> list[str]:
    """The checks of a ratio's clip range ``[1 - clip_low, 1 + clip_high]`` (PPO's too)."""
    p = []
    if not 0 < clip_low < 1:
        p.append(f"clip_low must be in (0, 1), got {clip_low}")
    if clip_high is not None and clip_high <= 0:
        p.append(f"clip_high must be > 0 or None, got {clip_high}")
    return p


@dataclass
class SurrogateConfig(TrainConfig):
    """The options every clipped-surrogate algorithm has: the KL weight and the clip range.
    Defaults: no KL, the symmetric PPO range 0.2 (inactive with one update per step, where
    the ratio is 1)."""

    beta: float = option(0.0, "weight of the k3 KL to the reference model (0: no reference)")
    clip_low: float = option(0.2, "PPO clip range below 1 (active only with several updates)")
    clip_high: float | None = option(None, "PPO clip range above 1 (None: same as clip_low)")

    def _problems(self) -> list[str]:
        p = super()._problems()
        if self.beta < 0:
            p.append(f"beta must be >= 0 (0 turns the KL term off), got {self.beta}")
        return p + clip_problems(self.clip_low, self.clip_high)


def same_option(config: type[TrainConfig], name: str, default: Any) -> Any:
    """Field ``name`` of ``config`` (its help text and allowed values) with another default:
    how a section changes a shared option's default without repeating its help."""
    meta = next(f.metadata for f in fields(config) if f.name == name)
    return option(default, meta["help"], choices=meta["choices"], hint=meta["hint"])


def aggregation_weight(micro: MicroBatch, aggregation: str) -> float:
    """A micro-batch's share of its minibatch's loss under ``aggregation``: its share of the
    model tokens for ``token-mean`` (every token weighs the same across micro-batches), else
    its share of the episodes (a mean, or a sum over a constant, per episode)."""
    if aggregation == "token-mean":
        return float(micro.mask.sum()) / max(micro.minibatch_tokens, 1)
    return len(micro.index) / micro.minibatch_episodes
