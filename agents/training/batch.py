"""Episodes as model batches: right-padded token batches, micro-batch splits, and the
:class:`MicroBatch` an algorithm's loss receives."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from agents.policy import Policy
from agents.rollout import Trajectory

# Advantages as an algorithm returns them: (B,) one per episode, or B rows of (n_tokens,) one
# per token of each episode (0 outside the model's turns).
Advantages = torch.Tensor | list[torch.Tensor]


def token_batch(
    policy: Policy, trajectories: Sequence[Trajectory]
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``(batch, mask)``: the right-padded model batch of ``trajectories`` and their
    ``assistant_mask`` (B, L) on the policy's device."""
    batch = policy.collate([t.model_input() for t in trajectories])
    mask = torch.zeros_like(batch["input_ids"])
    for row, t in enumerate(trajectories):
        mask[row, : len(t.assistant_mask)] = torch.tensor(t.assistant_mask, device=mask.device)
    return batch, mask


def micro_batches(index: Sequence[int], n: int) -> list[list[int]]:
    """``index`` cut into ``n`` contiguous micro-batches (the last may be shorter)."""
    size = math.ceil(len(index) / n)
    return [list(index[i : i + size]) for i in range(0, len(index), size)]


def pad(rows: Sequence[torch.Tensor], length: int) -> torch.Tensor:
    """1-D per-episode rows as one (b, length) float tensor, zero-padded on the right."""
    out = torch.zeros(len(rows), length)
    for r, row in enumerate(rows):
        out[r, : row.numel()] = row
    return out


def select(advantages: Advantages, chunk: Sequence[int], length: int) -> torch.Tensor:
    """The advantages of episodes ``chunk``: (b,) per episode, or (b, length) per token."""
    if isinstance(advantages, torch.Tensor):
        return advantages[chunk]
    return pad([advantages[i] for i in chunk], length)


@dataclass
class MicroBatch:
    """One micro-batch of an optimizer update, as an algorithm's loss sees it.

    Shapes: b episodes of the micro-batch, L = its longest sequence. Tensors are on the CPU
    unless noted; the loss moves what it uses to the log-probs' device.

    Attributes:
        index: the episodes' positions in the step's batch.
        trajectories: those episodes.
        mask: (b, L) 1 on the model's own tokens (on the policy's device).
        advantages: (b,) or (b, L), from the algorithm's ``advantages``.
        old_logprobs: (b, L) the log-probs before this step's updates; with one update per
            step, the current log-probs detached (so the ratio is exactly 1).
        ref_logprobs: (b, L) the reference model's log-probs, or None.
        minibatch_episodes: episodes in the minibatch this micro-batch belongs to.
        minibatch_tokens: model tokens in that minibatch.
        batch: the model batch of these episodes (``token_batch``, on the policy's device),
            for a loss that runs another model on them (PPO's critic); None where the loop
            does not give it.
    """

    index: list[int]
    trajectories: list[Trajectory]
    mask: torch.Tensor
    advantages: torch.Tensor
    old_logprobs: torch.Tensor
    ref_logprobs: torch.Tensor | None
    minibatch_episodes: int
    minibatch_tokens: int
    batch: dict[str, torch.Tensor] | None = None
