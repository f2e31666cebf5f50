"""Adapters around arft envs: delta observations, and discrete/Box views for classic RL libs."""

from arft_envs.wrappers.views import DeltaObservation, DiscreteActions, ImageObservation

__all__ = ["DeltaObservation", "DiscreteActions", "ImageObservation"]
