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
- its **extra models**: :meth:`Algorithm.extra_models`, frozen ones such as the reference of
  the KL term, and :meth:`Algorithm.trained_models`, ones that train beside the policy (PPO's
  critic): the loop prepares each with accelerate (DDP wraps it like the policy), gives it its
  own AdamW and schedule, steps it on the policy's accumulation boundaries, and accelerate's
  ``save_state`` / ``load_state`` put it in every step checkpoint (``model_1.safetensors``,
  ``optimizer_1.bin``, … after the policy's files, which keep their names);
- what it **reads before its advantages**: with :attr:`Algorithm.reference_in_advantages` the
  loop scores the reference first and passes it as :class:`Scores` (REINFORCE++ puts the KL in
  the reward); a trained model's own scores (a critic's values) the algorithm computes itself
  from the :class:`RunContext` the loop binds once everything is prepared;
- which **groups it keeps**: :meth:`Algorithm.keep_groups` (DAPO's dynamic sampling). The loop
  drops the others and rolls out more groups to refill the batch, at most
  :attr:`Algorithm.max_refills` extra rollouts per step; a batch still short after them is
  filled with dropped groups (their advantages are zero), so every process always trains on
  ``groups_per_step`` groups and the same number of micro-batches (a process with fewer would
  leave DDP's gradient all-reduce waiting forever).

A new algorithm is one file under ``agents/algorithms/`` defining its config, its pure tensor
functions and its ``Algorithm`` subclass, plus one line in ``ALGORITHMS``
(:mod:`agents.algorithms`). ``arft train --algo NAME`` then runs it. A section may extend
another's: the clipped-surrogate algorithms' sections subclass
:class:`~agents.algorithms.group.SurrogateConfig` (β and the clip range, written once) and
re-declare only the defaults they change.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from agents.training.config import TrainConfig, algorithm_names, option

if TYPE_CHECKING:
    from collections.abc import Sequence

    from agents.policy import Policy
    from agents.rollout import Trajectory
    from agents.training.batch import Advantages, MicroBatch


def algo_option(name: str) -> Any:
    """The ``algo`` field of an algorithm's config section, defaulting to ``name`` (so that
    ``PPOConfig()`` is a PPO run); its help and choices are the shared field's."""
    return option(name, TrainConfig.help_text("algo"), choices=algorithm_names)


@dataclass
class Scores:
    """What the loop scored before calling :meth:`Algorithm.advantages`.

    Attributes:
        reference: per episode, the reference model's log-prob of each token (1-D, the
            episode's length; 0 off the model's tokens), or None when not asked for
            (:attr:`Algorithm.reference_in_advantages`).
    """

    reference: list[torch.Tensor] | None = None


@dataclass
class TrainedModel:
    """A model that trains beside the policy (see :meth:`Algorithm.trained_models`).

    Attributes:
        module: the model; every parameter with ``requires_grad`` is optimised.
        learning_rate: its AdamW's peak learning rate (the run's schedule shape applies).
        max_grad_norm: its own gradient clipping (0: none).
    """

    module: torch.nn.Module
    learning_rate: float
    max_grad_norm: float = 1.0


@dataclass
class RunContext:
    """What an algorithm may use once the loop has prepared the run (:meth:`Algorithm.bind`).

    Attributes:
        policy: the policy (its ``collate`` and ``forward_logprobs``).
        accelerator: the run's ``Accelerator`` (autocast, ``unwrap_model``).
        models: the prepared trained models (accelerate's wrappers under DDP) and the frozen
            extra models, by name.
        micro_batches: micro-batches per minibatch (``gradient_accumulation_steps``), the
            chunking a no-grad pass over the step's episodes should use too.
    """

    policy: Policy
    accelerator: Any
    models: dict[str, torch.nn.Module]
    micro_batches: int


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
    #: The config field holding the weight of the loss's KL to the reference model (``"beta"``
    #: for the GRPO family, ``"kl_coef"`` for PPO); None for an algorithm with no KL term.
    kl_weight_field: ClassVar[str | None] = None

    run: RunContext | None = None

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
        """Whether the loss needs the reference model's log-probs (``ref_logprobs``): when the
        config field named by :attr:`kl_weight_field` is above 0."""
        return self.kl_weight_field is not None and getattr(self.config, self.kl_weight_field) > 0

    def extra_models(self, policy: Policy) -> dict[str, torch.nn.Module]:
        """Models the algorithm needs besides the policy, built once before RL starts (after
        any warm start), by name. The default builds ``"reference"``, a frozen copy of the
        policy, when :attr:`uses_reference` and the policy is trained in full; under LoRA the
        reference is the same network with its adapters off, so no copy is made. (Frozen
        models only: the loop neither optimises nor checkpoints them.)"""
        if self.uses_reference and not self.config.lora:
            return {"reference": copy.deepcopy(policy.model).eval().requires_grad_(False)}
        return {}

    def trained_models(self, policy: Policy) -> dict[str, TrainedModel]:
        """Models that train beside the policy, built once before RL starts, by name (none by
        default). The loop prepares, optimises and checkpoints them (module docstring); the
        algorithm reaches the prepared ones through :attr:`run` and puts their losses in
        :meth:`loss`'s value (one backward pass reaches every model)."""
        return {}

    def bind(self, run: RunContext) -> None:
        """Called once the run is prepared (and before a resume's checkpoint loads into the
        prepared models); the default keeps ``run`` as :attr:`run`."""
        self.run = run

    @property
    def reference_in_advantages(self) -> bool:
        """Whether :meth:`advantages` needs the reference's log-probs (``scores.reference``)."""
        return False

    # ------------------------------------------------------------------ the batch

    def keep_groups(self, trajectories: Sequence[Trajectory]) -> list[bool] | None:
        """Which of the rollout's groups (``group_size`` contiguous episodes each) to train
        on; None keeps all and asks for no refill (the default)."""
        return None

    @property
    def max_refills(self) -> int:
        """Extra rollouts a step may make to replace groups :meth:`keep_groups` dropped."""
        return 0

    # ------------------------------------------------------------------ the maths

    def advantages(
        self, trajectories: Sequence[Trajectory], scores: Scores | None = None
    ) -> Advantages:
        """The step's advantages: (B,) one per episode, or B rows (n_tokens,) one per token.
        ``scores`` holds what the loop scored first (:class:`Scores`)."""
        raise NotImplementedError

    def loss(self, micro: MicroBatch, logprobs: torch.Tensor) -> Loss:
        """The loss of one micro-batch; ``logprobs`` (b, L) are the policy's, with grad."""
        raise NotImplementedError

    def micro_weight(self, micro: MicroBatch) -> float:
        """The micro-batch's share of its minibatch's loss; the shares add up to 1. The
        default weighs by episodes (right for a loss that is a mean over episodes)."""
        return len(micro.index) / micro.minibatch_episodes


def episode_returns(trajectories: Sequence[Trajectory]) -> torch.Tensor:
    """(B,) float32: each episode's return, in batch order (what episode-level advantages
    start from)."""
    return torch.tensor([t.episode_return for t in trajectories], dtype=torch.float32)
