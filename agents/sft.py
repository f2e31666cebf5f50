"""Moved to :mod:`agents.training.warm_start` and :mod:`agents.training.batch`; re-exported
here for one release."""

from agents.training.batch import token_batch
from agents.training.warm_start import (
    ExpertTurnTooLong,
    expert_episode,
    expert_trajectories,
    sft_loss,
)

__all__ = ["ExpertTurnTooLong", "expert_episode", "expert_trajectories", "sft_loss", "token_batch"]
