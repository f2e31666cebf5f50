"""PPO pieces for token-level critics: GAE and the clipped value loss.

Shapes: B sequences, T steps (tokens or turns); ``mask`` (B,T) marks valid steps.
"""

from __future__ import annotations

import torch


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the valid steps of each sequence.

    rewards, values, mask: (B,T). Steps where ``mask`` is 0 are skipped (their advantage is
    0) and the value after the last valid step is 0 (the episode ended). Returns
    ``(advantages, returns)``, both (B,T), with ``returns = advantages + values``.
    """
    mask = mask.to(values.dtype)
    advantages = torch.zeros_like(values)
    next_value = torch.zeros_like(values[:, 0])  # (B,)
    running = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        # a masked step is transparent: the running sum and next value pass through it
        running = m * (delta + gamma * lam * running) + (1 - m) * running
        advantages[:, t] = running * m
        next_value = m * values[:, t] + (1 - m) * next_value
    return advantages, advantages + values


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float | None = 0.2,
) -> torch.Tensor:
    """0.5·max((V-R)², (clip(V, V_old±ε)-R)²), averaged over valid steps. Scalar."""
    mask = mask.to(values.dtype)
    loss = (values - returns) ** 2
    if clip is not None:
        clipped = old_values + torch.clamp(values - old_values, -clip, clip)
        loss = torch.maximum(loss, (clipped - returns) ** 2)
    return 0.5 * (loss * mask).sum() / mask.sum().clamp(min=1)
