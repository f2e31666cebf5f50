"""Moved to :mod:`agents.training` (the loop, config, run directory, metrics) and
:mod:`agents.algorithms.grpo` (GRPO's config section). Re-exported here for one release;
``TrainConfig`` here is GRPO's full config, as it was."""

from agents.algorithms.grpo import GRPOConfig as TrainConfig
from agents.rollout.trajectory import trajectory_record, write_trajectory_page
from agents.training import ConfigError, GRPOTrainer, Trainer, lr_factor, make_accelerator
from agents.training.config import RESUMABLE_FIELDS, env_name
from agents.training.warm_start import SFT_SEED_BASE

__all__ = [
    "RESUMABLE_FIELDS",
    "SFT_SEED_BASE",
    "ConfigError",
    "GRPOTrainer",
    "TrainConfig",
    "Trainer",
    "env_name",
    "lr_factor",
    "make_accelerator",
    "trajectory_record",
    "write_trajectory_page",
]
