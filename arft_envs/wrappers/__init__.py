"""Adapters around arft envs: delta observations, discrete/Box views and one-turn episodes
for classic RL libs."""

from arft_envs.wrappers.views import (
    DeltaObservation,
    DiscreteActions,
    ImageObservation,
    SingleTurn,
)

__all__ = ["DeltaObservation", "DiscreteActions", "ImageObservation", "SingleTurn"]
