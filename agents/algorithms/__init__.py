"""RL algorithms: each one file with its pure tensor functions, its config section and its
:class:`~agents.algorithms.base.Algorithm` class; :data:`ALGORITHMS` names them for
``arft train --algo NAME`` (``grpo`` is the default).

- ``grpo``: group-normalised advantages, clipped surrogate, β·k3 KL (the paper's);
- ``ppo``: a learned critic, GAE per token or per turn, clipped value loss;
- ``rloo``: the leave-one-out baseline;
- ``reinforce_pp``: REINFORCE++, token KL in the reward, batch-normalised returns;
- ``dapo``: clip-higher, dynamic sampling, token-level loss, overlong shaping;
- ``gspo``: the sequence-level importance ratio and clipping;
- ``dr_grpo``: GRPO without std scaling and with a constant normaliser.
"""

from agents.algorithms.base import Algorithm, Loss, RunContext, Scores, TrainedModel
from agents.algorithms.dapo import DAPO, DAPOConfig
from agents.algorithms.dr_grpo import DrGRPO, DrGRPOConfig
from agents.algorithms.grpo import GRPO, GRPOConfig
from agents.algorithms.gspo import GSPO, GSPOConfig
from agents.algorithms.ppo import PPO, PPOConfig
from agents.algorithms.reinforce_pp import ReinforcePP, ReinforcePPConfig
from agents.algorithms.rloo import RLOO, RLOOConfig

ALGORITHMS: dict[str, type[Algorithm]] = {
    cls.name: cls for cls in (GRPO, PPO, RLOO, ReinforcePP, DAPO, GSPO, DrGRPO)
}

__all__ = [
    "ALGORITHMS", "DAPO", "GRPO", "GSPO", "PPO", "RLOO", "Algorithm", "DAPOConfig", "DrGRPO",
    "DrGRPOConfig", "GRPOConfig", "GSPOConfig", "Loss", "PPOConfig", "ReinforcePP",
    "ReinforcePPConfig", "RLOOConfig", "RunContext", "Scores", "TrainedModel",
]  # fmt: skip
