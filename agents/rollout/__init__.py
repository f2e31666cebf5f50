"""Multi-turn episodes against vector envs, token-in/token-out.

- :mod:`~agents.rollout.config`: :class:`RolloutConfig`, how episodes are sampled;
- :mod:`~agents.rollout.trajectory`: :class:`Trajectory`, what one episode is, and its files;
- :mod:`~agents.rollout.episode`: :class:`EpisodeBuilder`, the token-level state of one live
  episode (how the token sequence is built without re-tokenising, and the check that it is);
- :mod:`~agents.rollout.collect`: :func:`collect`, the slot-scheduling loop over a vector env;
- :mod:`~agents.rollout.vector`: :func:`make_envs` and the vector-env plumbing.

Every public name is importable from ``agents.rollout`` itself.
"""

from agents.rollout.collect import IDLE_ACTION, collect
from agents.rollout.config import SAFETY_MAX_TURNS, RolloutConfig
from agents.rollout.episode import EpisodeBuilder, RetokenizationError
from agents.rollout.trajectory import Trajectory, load_trajectories, save_trajectories
from agents.rollout.vector import WholeInfo, make_envs

__all__ = [
    "IDLE_ACTION",
    "SAFETY_MAX_TURNS",
    "EpisodeBuilder",
    "RetokenizationError",
    "RolloutConfig",
    "Trajectory",
    "WholeInfo",
    "collect",
    "load_trajectories",
    "make_envs",
    "save_trajectories",
]
