"""Online data filtering: groups whose tasks are already solved, or hopeless, teach little.

A group's *accuracy* is the share of its episodes that succeed (:func:`episode_success`:
the return reaches ``success_return``, or without one the env reports an exact match). A group
whose accuracy is at most ``filter_low`` or at least ``filter_high`` (by default: all wrong or
all correct) is *filtered* (:func:`filtered_groups`), and ``data_filter`` says what that does:

- ``skip``: the group is left out of the update. It is dropped from the rollout and, with
  ``filter_max_refills > 0``, more groups are rolled out to replace it (the loop's dynamic
  sampling, the mechanism DAPO's all-equal-rewards filter uses too); a group still in the
  batch after the refills (every process trains on the same number of groups) has its
  advantages set to 0;
- ``downweight``: the group stays, its advantages multiplied by ``filter_weight``.

With GRPO an all-correct group of equal rewards already has zero advantages; the filter also
acts on groups whose members all succeed with different returns, and on algorithms whose
baseline is not the group mean (PPO's critic, REINFORCE++'s batch normalisation), where such
a group's advantages are not zero. Logged: ``filter/*`` (groups filtered, all-correct,
all-wrong, mean group accuracy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

DATA_FILTERS = ("off", "skip", "downweight")


def episode_success(trajectory: Any, success_return: float | None) -> bool:
    """Whether an episode succeeded: its return reaches ``success_return``, or (None) the
    env's final info reports an exact match (``info["em"] == 1``)."""
    if success_return is not None:
        return float(trajectory.episode_return) >= success_return
    return float(trajectory.info.get("em", 0.0) or 0.0) >= 1.0


def group_accuracy(success: Sequence[bool], group_size: int) -> torch.Tensor:
    """(B,) successes of contiguous groups -> (n_groups,) the share that succeeded."""
    flags = torch.tensor([float(s) for s in success])
    if flags.numel() % group_size:
        raise ValueError(f"need a multiple of group_size={group_size} episodes, got {len(flags)}")
    return flags.view(-1, group_size).mean(dim=1)


def filtered_groups(accuracy: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """(n_groups,) accuracies -> (n_groups,) bool: at most ``low`` or at least ``high``."""
    return (accuracy <= low) | (accuracy >= high)


def scale_advantages(advantages: Any, weights: Sequence[float]) -> Any:
    """Advantages as an algorithm returns them ((B,) or B per-token rows), each episode's
    multiplied by its weight."""
    if isinstance(advantages, torch.Tensor):
        w = torch.tensor(list(weights), dtype=advantages.dtype, device=advantages.device)
        return advantages * w.view(-1, *([1] * (advantages.ndim - 1)))
    return [row * float(w) for row, w in zip(advantages, weights, strict=True)]


class DataFilter:
    """The filter of a run: the verdict per group (:meth:`keep`), and the advantages of the
    batch it trains on (:meth:`weigh`)."""

    def __init__(self, config: Any):
        self.config = config
        self.mode = config.data_filter
        self.stats: dict[str, float] = {}

    @property
    def max_refills(self) -> int:
        return self.config.filter_max_refills if self.mode == "skip" else 0

    def verdict(self, trajectories: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(accuracy, filtered), each (n_groups,)."""
        cfg = self.config
        success = [episode_success(t, cfg.success_return) for t in trajectories]
        accuracy = group_accuracy(success, cfg.group_size)
        return accuracy, filtered_groups(accuracy, cfg.filter_low, cfg.filter_high)

    def keep(self, trajectories: Sequence[Any]) -> list[bool] | None:
        """Under ``skip``, which groups to keep (the loop refills the others); else None."""
        if self.mode != "skip":
            return None
        _, filtered = self.verdict(trajectories)
        return (~filtered).tolist()

    def weigh(self, trajectories: Sequence[Any], advantages: Any) -> Any:
        """The advantages with filtered groups zeroed (``skip``) or scaled (``downweight``);
        records the step's ``filter/*`` statistics."""
        cfg = self.config
        accuracy, filtered = self.verdict(trajectories)
        weight = 0.0 if self.mode == "skip" else cfg.filter_weight
        per_group = [weight if f else 1.0 for f in filtered.tolist()]
        self.stats = {
            "filter/groups_filtered": float(filtered.sum()),
            "filter/all_correct": float((accuracy >= 1.0).sum()),
            "filter/all_wrong": float((accuracy <= 0.0).sum()),
            "filter/group_accuracy": float(accuracy.mean()),
        }
        if not filtered.any():
            return advantages
        return scale_advantages(advantages, [w for w in per_group for _ in range(cfg.group_size)])


def config_problems(cfg: Any) -> list[str]:
    """What is wrong with the filtering fields of ``cfg``, each with its fix."""
    p: list[str] = []
    if cfg.data_filter == "off":
        return p
    if not 0 <= cfg.filter_low < cfg.filter_high <= 1:
        p.append(
            f"need 0 <= filter_low < filter_high <= 1 (group accuracies filtered at or beyond "
            f"them), got filter_low={cfg.filter_low}, filter_high={cfg.filter_high}"
        )
    if not 0 <= cfg.filter_weight <= 1:
        p.append(f"filter_weight must be in [0, 1], got {cfg.filter_weight}")
    if cfg.filter_max_refills < 0:
        p.append(f"filter_max_refills must be >= 0, got {cfg.filter_max_refills}")
    return p
