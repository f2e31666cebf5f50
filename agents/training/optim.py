"""The optimiser side of a run: which weights train (all, or LoRA adapters), AdamW, the
learning-rate schedule, and its re-plan when a resumed run changes length."""

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


def make_optimizer(
    params: list[torch.nn.Parameter], config: TrainConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over ``params`` and its schedule over the run's ``steps × updates_per_step``
    optimizer updates."""
    optimizer = torch.optim.AdamW(
        params,
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        betas=(0.9, 0.999),
        eps=1e-8,
    )
    total = config.steps * config.updates_per_step
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: lr_factor(i, total, config.warmup_steps, config.lr_schedule)
    )
    return optimizer, scheduler


def replan_lr(optimizer, scheduler) -> None:
    """After loading a checkpoint, set the learning rate from the schedule of *this* run
    (a resume may extend ``steps``, which re-plans the decay). ``optimizer`` and
    ``scheduler`` may be accelerate's wrappers."""
    schedule = getattr(scheduler, "scheduler", scheduler)
    for group, factor, base in zip(
        optimizer.param_groups, schedule.lr_lambdas, schedule.base_lrs, strict=True
    ):
        group["lr"] = base * factor(schedule.last_epoch)
    schedule._last_lr = [g["lr"] for g in optimizer.param_groups]
