"""The interface an RL algorithm implements, and the loop's side of the contract.

The on-policy loop (:class:`agents.training.trainer.Trainer`) is the same for every algorithm:
roll out a step's groups, compute advantages, score the batch with the frozen models, run
``inner_epochs × num_minibatches`` optimizer updates over micro-batches, log, checkpoint. What
differs between GRPO, RLOO, PPO, DAPO, … is owned by an :class:`Algorithm`:

- its **config section**: ``config_class``, a :class:`~agents.training.config.TrainConfig`
  subclass whose extra fields (with help text, validated in ``_problems``) are the algorithm's
  options, flat in config files and on the command line;
- its **advantages**: :meth:`Algorithm.advantages`, per episode or per token;
- its **loss** on one micro-batch: :meth:`Algorithm.loss` (and how micro-batches weigh within
  a minibatch, :meth:`Algorithm.micro_weight`);
- its **extra models**: :meth:`Algorithm.extra_models`, e.g. the frozen reference of the KL
  term (a critic would go here too).

A new algorithm is one file under ``agents/algorithms/`` defining its config, its pure tensor
functions and its ``Algorithm`` subclass, plus one line in ``ALGORITHMS``
(:mod:`agents.algorithms`). ``arft train --algo NAME`` then runs it. A section may extend
another's (a Dr. GRPO or DAPO config can subclass ``GRPOConfig`` and change defaults).

Not yet in the contract, because no algorithm needs them today: extra models that *train*
(PPO's critic must be prepared, optimised and checkpointed with the policy), and dropping
groups after the rollout (DAPO's dynamic sampling must refill the batch so that every process
keeps the same number of micro-batches, or DDP's gradient sync waits forever).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import torch

from agents.training.config import TrainConfig

if TYPE_CHECKING:
    from collections.abc import Sequence

    from agents.policy import Policy
    from agents.rollout import Trajectory
    from agents.training.batch import Advantages, MicroBatch


@dataclass
class Loss:
    """An algorithm's loss on one micro-batch.

    Attributes:
        value: the scalar to differentiate (before the loop's micro-batch weighting).
        means: statistics that are means over the micro-batch's episodes, weighted like
            the loss (``micro_weight``) when the loop adds them up.
        token_means: statistics that are means over model tokens, weighted by the
            micro-batch's share of the minibatch's tokens.
    """

    value: torch.Tensor
    means: dict[str, float] = field(default_factory=dict)
    token_means: dict[str, float] = field(default_factory=dict)


class Algorithm:
    """An RL algorithm as the training loop drives it (see the module docstring).

    Subclasses set ``name`` and ``config_class`` and implement :meth:`advantages` and
    :meth:`loss`. ``self.config`` is the run's config (an instance of ``config_class``),
    read live: a change to it applies from the next call.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[TrainConfig]] = TrainConfig

    def __init__(self, config: TrainConfig):
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got "
                f"{type(config).__name__}; build it with TrainConfig.from_dict"
            )
        self.config = config

    # ------------------------------------------------------------------ models

    @property
    def uses_reference(self) -> bool:
        """Whether the loss needs the reference model's log-probs (``ref_logprobs``)."""
        return False

    def extra_models(self, policy: Policy) -> dict[str, torch.nn.Module]:
        """Models the algorithm needs besides the policy, built once before RL starts (after
        any warm start), by name. The default builds ``"reference"``, a frozen copy of the
        policy, when :attr:`uses_reference` and the policy is trained in full; under LoRA the
        reference is the same network with its adapters off, so no copy is made. (Frozen
        models only: the loop neither optimises nor checkpoints them.)"""
        if self.uses_reference and not self.config.lora:
            return {"reference": copy.deepcopy(policy.model).eval().requires_grad_(False)}
        return {}

    # ------------------------------------------------------------------ the maths

    def advantages(self, trajectories: Sequence[Trajectory]) -> Advantages:
        """The step's advantages: (B,) one per episode, or B rows (n_tokens,) one per token."""
        raise NotImplementedError

    def loss(self, micro: MicroBatch, logprobs: torch.Tensor) -> Loss:
        """The loss of one micro-batch; ``logprobs`` (b, L) are the policy's, with grad."""
        raise NotImplementedError

    def micro_weight(self, micro: MicroBatch) -> float:
        """The micro-batch's share of its minibatch's loss; the shares add up to 1. The
        default weighs by episodes (right for a loss that is a mean over episodes)."""
        return len(micro.index) / micro.minibatch_episodes
