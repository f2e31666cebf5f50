"""RL algorithms: each one file with its pure tensor functions, its config section and its
:class:`~agents.algorithms.base.Algorithm` class; :data:`ALGORITHMS` names them for
``arft train --algo NAME``. (:mod:`agents.algorithms.ppo` holds GAE and the clipped value loss,
not yet an algorithm.)"""

from agents.algorithms.base import Algorithm, Loss
from agents.algorithms.grpo import GRPO, GRPOConfig

ALGORITHMS: dict[str, type[Algorithm]] = {cls.name: cls for cls in (GRPO,)}

__all__ = ["ALGORITHMS", "GRPO", "Algorithm", "GRPOConfig", "Loss"]
