"""The optimiser side of a run: which weights train (all, or LoRA adapters), AdamW, the
learning-rate schedule, and how a resumed run continues it.

The schedule is a :class:`LrSchedule` object rather than a lambda so that its plan is saved
in the scheduler's state (``LambdaLR`` saves the ``__dict__`` of callable objects): a resumed
run reads the plan it was following, so its learning rates are the uninterrupted run's, and a
resume that changes ``steps`` continues from the rate reached instead of re-planning the whole
run (which made the rate jump back up, e.g. 3.3e-7 -> 4e-7).
"""

from __future__ import annotations

import math

import torch

from agents.policy import LoraSettings, Policy, apply_lora
from agents.training.config import TrainConfig, derive


def attach_lora(policy: Policy, config: TrainConfig) -> None:
    """Give ``policy.model`` the LoRA adapters of ``config`` (``lora_r``, ``lora_alpha``,
    ``lora_dropout``); only they train from then on."""
    policy.model = apply_lora(policy.model, derive(LoraSettings, config, prefix="lora_"))


def lr_factor(update: int, total: int, warmup: int, schedule: str) -> float:
    """The learning-rate multiplier at optimizer update ``update`` (0-based) of ``total``."""
    if warmup and update < warmup:
        return (update + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (update - warmup) / max(1, total - warmup))
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class LrSchedule:
    """The learning-rate multiplier of each optimizer update: :func:`lr_factor` over
    ``total`` updates, then the continuations a resume appended. A continuation
    ``(start, factor, end)`` decays from ``factor`` at update ``start`` to 0 at update
    ``end``, with the run's shape (linear or cosine)."""

    def __init__(self, total: int, warmup: int, schedule: str):
        self.total = total
        self.warmup = warmup
        self.schedule = schedule
        self.continuations: list[tuple[int, float, int]] = []

    def __call__(self, update: int) -> float:
        for start, factor, end in reversed(self.continuations):
            if update >= start:
                return factor * _shape((update - start) / max(1, end - start), self.schedule)
        return lr_factor(update, self.total, self.warmup, self.schedule)

    @property
    def end(self) -> int:
        """The update at which the current plan reaches its end."""
        return self.continuations[-1][2] if self.continuations else self.total

    def extend(self, done: int, total: int) -> None:
        """Re-plan for a run that now ends at ``total`` updates, ``done`` of them done: those
        keep their rates, and the rest decays from the rate of the last one done to the
        schedule's end at ``total``, so the rate never jumps. No change when ``total`` is the
        current plan's end."""
        if total == self.end or self.schedule == "constant" or done < 1:
            return
        last = done - 1
        if not self.continuations and last < self.warmup:
            self.total = total  # still warming up: the same warmup, then the longer decay
            return
        self.continuations.append((last, self(last), total))


def _shape(progress: float, schedule: str) -> float:
    progress = min(1.0, max(0.0, progress))
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "constant":
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(
    params: list[torch.nn.Parameter], config: TrainConfig, learning_rate: float | None = None
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over ``params`` and its schedule over the run's ``steps × updates_per_step``
    optimizer updates; ``learning_rate`` (default ``config.learning_rate``) is the peak, for
    a model that trains beside the policy at its own rate (PPO's critic)."""
    optimizer = torch.optim.AdamW(
        params,
        lr=config.learning_rate if learning_rate is None else learning_rate,
        weight_decay=config.weight_decay,
        betas=(0.9, 0.999),
        eps=1e-8,
    )
    total = config.steps * config.updates_per_step
    scheduler = PlannedLR(optimizer, LrSchedule(total, config.warmup_steps, config.lr_schedule))
    return optimizer, scheduler


class PlannedLR(torch.optim.lr_scheduler.LambdaLR):
    """``LambdaLR`` over an :class:`LrSchedule` that, when it loads a checkpoint's state,
    keeps the saved plan for the updates done and extends it to this run's length."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: LrSchedule):
        self.planned_total = schedule.total
        super().__init__(optimizer, schedule)

    def load_state_dict(self, state_dict: dict) -> None:
        planned = self.planned_total  # this run's length, not the saved run's
        super().load_state_dict(state_dict)
        self.planned_total = planned
        for schedule in self.lr_lambdas:
            if isinstance(schedule, LrSchedule):
                schedule.extend(self.last_epoch, planned)


def replan_lr(optimizer, scheduler) -> None:
    """After loading a checkpoint, set the learning rate of the next update from the loaded
    plan (see :class:`PlannedLR`). ``optimizer`` and ``scheduler`` may be accelerate's
    wrappers."""
    schedule = getattr(scheduler, "scheduler", scheduler)
    for group, factor, base in zip(
        optimizer.param_groups, schedule.lr_lambdas, schedule.base_lrs, strict=True
    ):
        group["lr"] = base * factor(schedule.last_epoch)
    schedule._last_lr = [g["lr"] for g in optimizer.param_groups]
