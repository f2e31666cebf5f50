"""GRPO: group-relative advantages and the clipped policy loss with a k3 KL penalty.

Shapes: B = completions in the batch (prompts × group size G), T = completion tokens
(right-padded; ``mask`` marks the model's own tokens). Everything is a pure function.

The objective (per token t of completion i, A_i its advantage, r = exp(logp - old_logp)):

    loss_it = -min(r·A_i, clip(r, 1-ε_low, 1+ε_high)·A_i) + β·kl_it
    kl_it   = exp(ref - logp) - (ref - logp) - 1          (k3, always >= 0)

and the per-token losses are aggregated by one of ``AGGREGATIONS``. With one inner epoch the
ratio is 1 and clipping is inactive, which is the paper's setting (paper.md §3.4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from agents.algorithms.base import Algorithm, Loss, Scores, episode_returns
from agents.algorithms.group import SurrogateConfig, aggregation_weight, same_option
from agents.training.config import option

if TYPE_CHECKING:
    from agents.rollout import Trajectory
    from agents.training.batch import MicroBatch

AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "dr-grpo")


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4
) -> torch.Tensor:
    """Advantages relative to the group: ``(R - mean_g) / (std_g + eps)``, or unscaled.

    rewards: (B,) with B = n_groups * group_size, groups contiguous. ``scale=False`` gives
    Dr. GRPO's unscaled ``R - mean_g``. The std is the unbiased one, as in the paper's trainer.
    Returns (B,).
    """
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(
            f"rewards must be 1-D with a multiple of group_size={group_size} entries, "
            f"got shape {tuple(rewards.shape)}"
        )
    grouped = rewards.view(-1, group_size)  # (n_groups, G)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale:
        std = grouped.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(centred)
        centred = centred / (std + eps)
    return centred.reshape(-1)


def turn_advantages(
    turn_rewards: Sequence[Sequence[float]], group_size: int, scale: bool = True, eps: float = 1e-4
) -> list[list[float]]:
    """Per-turn advantages: turn k of an episode against turn k of the group's other episodes
    that reached it, ``(r_k - mean) / (std + eps)`` (or unscaled), each on its own reward.

    The paper trains MAT-Coding on one row per step: G completions of the same prefix, each
    scored by that step's reward. Turn 0 of a live group is exactly that (one prompt for the
    whole group); later turns are compared with the group's same-numbered turns, whose
    histories may differ. A turn that only one episode of its group reached gets 0.

    turn_rewards: B sequences (episode i's reward per turn), groups of ``group_size``
    contiguous. Returns B lists of the same lengths.
    """
    if len(turn_rewards) % group_size:
        raise ValueError(
            f"need a multiple of group_size={group_size} episodes, got {len(turn_rewards)}"
        )
    out = [[0.0] * len(r) for r in turn_rewards]
    for start in range(0, len(turn_rewards), group_size):
        members = range(start, start + group_size)
        for k in range(max(len(turn_rewards[i]) for i in members)):
            reached = [i for i in members if len(turn_rewards[i]) > k]
            if len(reached) < 2:
                continue
            values = torch.tensor([float(turn_rewards[i][k]) for i in reached])  # (n,)
            centred = group_advantages(values, len(reached), scale=scale, eps=eps)
            for i, value in zip(reached, centred.tolist(), strict=True):
                out[i][k] = value
    return out


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """The k3 estimator of KL(π‖π_ref) per token: exp(ref-logp) - (ref-logp) - 1. (B,T)."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, how: str, max_tokens: int | None = None):
    """Reduce (B,T) per-token values to a scalar.

    - ``token-mean``: every unmasked token in the batch weighs the same;
    - ``seq-mean-token-mean``: the mean over each sequence, then over sequences (the paper);
    - ``dr-grpo``: the sum divided by a constant ``B * max_tokens`` (no length bias).
    """
    mask = mask.to(per_token.dtype)
    if how == "token-mean":
        return (per_token * mask).sum() / mask.sum().clamp(min=1)
    if how == "seq-mean-token-mean":
        per_seq = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)  # (B,)
        return per_seq.mean()
    if how == "dr-grpo":
        denom = per_token.shape[0] * (max_tokens if max_tokens is not None else per_token.shape[1])
        return (per_token * mask).sum() / denom
    raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {how!r}")


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar, differentiable
    policy_loss: float  # the surrogate part, aggregated
    kl: float  # mean k3 KL over model tokens
    clip_fraction: float  # share of model tokens where the clipped term was active
    ratio_mean: float


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    ref_logp: torch.Tensor | None = None,
    beta: float = 0.04,
    clip_low: float = 0.2,
    clip_high: float | None = None,
    aggregation: str = "seq-mean-token-mean",
    max_tokens: int | None = None,
) -> LossOutput:
    """The clipped GRPO surrogate plus β·k3 KL, aggregated over model tokens.

    logp, old_logp, ref_logp, mask: (B,T); advantages: (B,) per sequence or (B,T) per token. ``old_logp`` are the sampling
    log-probs (detached); ``ref_logp`` the frozen reference's (needed when ``beta > 0``).
    """
    if beta > 0 and ref_logp is None:
        raise ValueError("beta > 0 needs ref_logp (the reference model's log-probs)")
    clip_high = clip_low if clip_high is None else clip_high
    mask_f = mask.to(logp.dtype)
    ratio = torch.exp(logp - old_logp.detach())  # (B,T)
    adv = advantages.detach()
    adv = adv.unsqueeze(1) if adv.ndim == 1 else adv  # (B,1), or (B,T) per token
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - clip_low, 1 + clip_high) * adv
    surrogate = -torch.minimum(unclipped, clipped)  # (B,T)
    per_token = surrogate
    kl_mean = 0.0
    if ref_logp is not None:
        kl = k3_kl(logp, ref_logp.detach())  # (B,T)
        if beta > 0:
            per_token = per_token + beta * kl
        kl_mean = float((kl.detach() * mask_f).sum() / mask_f.sum().clamp(min=1))
    loss = aggregate(per_token, mask, aggregation, max_tokens)
    with torch.no_grad():
        n = mask_f.sum().clamp(min=1)
        clip_frac = float(((clipped < unclipped).to(logp.dtype) * mask_f).sum() / n)
        ratio_mean = float((ratio * mask_f).sum() / n)
        pol = float(aggregate(surrogate, mask, aggregation, max_tokens))
    return LossOutput(loss, pol, kl_mean, clip_frac, ratio_mean)


def surrogate_loss(micro: MicroBatch, logprobs: torch.Tensor, **settings) -> Loss:
    """:func:`policy_loss` on one micro-batch with ``settings`` (beta, clips, aggregation, …),
    as the loop's :class:`~agents.algorithms.base.Loss` with the statistics it logs: the
    surrogate (per episode), the k3 KL, the clip fraction and the mean ratio (per token).
    ``logprobs`` (b, L) are the policy's, with grad."""
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


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-token entropy of the categorical distribution: (B,T,V) -> (B,T). For logging."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


# ============================================================================ the algorithm
# Below: GRPO as the training loop drives it (agents.algorithms.base). The functions above stay
# pure; the config and the class only route the run's settings to them.

CREDITS = ("episode", "turn")


@dataclass
class GRPOConfig(SurrogateConfig):
    """A GRPO run: the shared config, the surrogate's options
    (:class:`~agents.algorithms.group.SurrogateConfig`: β, ``clip_low``, ``clip_high``) and
    GRPO's own. Defaults are the paper's (paper.md §5): β = 0.04, std-scaled advantages per
    episode, sequence-mean-then-batch-mean loss."""

    beta: float = same_option(SurrogateConfig, "beta", 0.04)
    scale_advantages: bool = option(True, "divide by the group std (False: Dr. GRPO, unscaled)")
    credit: str = option(
        "episode",
        "what a token's advantage compares: 'episode' (its episode's return, the paper's GRPO) "
        "or 'turn' (its turn's own reward against the group's same-numbered turns, as in the "
        "paper's one-row-per-step data)",
        choices=CREDITS,
    )
    aggregation: str = option(
        "seq-mean-token-mean",
        "loss reduction: seq-mean-token-mean (the paper: mean per episode, then over episodes), "
        "token-mean (every token weighs the same, so short episodes — e.g. ones a format error "
        "ended — do not weigh more per token), or dr-grpo (sum over a constant)",
        choices=AGGREGATIONS,
    )


class GRPO(Algorithm):
    """Group-relative advantages (:func:`group_advantages`, or :func:`turn_advantages` with
    ``credit='turn'``) and the clipped surrogate with a β·k3 KL (:func:`policy_loss`)."""

    name = "grpo"
    config_class = GRPOConfig
    config: GRPOConfig

    kl_weight_field = "beta"

    def advantages(
        self, trajectories: Sequence[Trajectory], scores: Scores | None = None
    ) -> torch.Tensor | list[torch.Tensor]:
        """(B,) of the episodes' returns against their group, or with ``credit='turn'`` one
        (n_tokens,) row per episode where each sampled token carries its turn's."""
        cfg = self.config
        if cfg.credit == "turn":
            per_turn = turn_advantages(
                [t.rewards for t in trajectories], cfg.group_size, scale=cfg.scale_advantages
            )
            rows = []
            for t, values in zip(trajectories, per_turn, strict=True):
                row = torch.zeros(len(t.input_ids))
                for (start, end), value in zip(t.turn_spans, values, strict=False):
                    row[start:end] = value  # a turn generated but never stepped keeps 0
                rows.append(row)
            return rows
        returns = episode_returns(trajectories)
        return group_advantages(returns, cfg.group_size, scale=cfg.scale_advantages)

    def loss(self, micro: MicroBatch, logprobs: torch.Tensor) -> Loss:
        cfg = self.config
        return surrogate_loss(
            micro, logprobs, beta=cfg.beta, clip_low=cfg.clip_low, clip_high=cfg.clip_high,
            aggregation=cfg.aggregation, max_tokens=cfg.max_new_tokens * cfg.max_turns,
        )  # fmt: skip

    def micro_weight(self, micro: MicroBatch) -> float:
        """By tokens under ``token-mean`` (every token weighs the same across micro-batches),
        else by episodes."""
        return aggregation_weight(micro, self.config.aggregation)
