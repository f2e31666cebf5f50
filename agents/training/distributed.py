"""Accelerate for a run: the ``Accelerator`` a config asks for, the adapters-only save hook
under LoRA, and the full weights for generation under FSDP / ZeRO-3."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from agents.training.config import TrainConfig


def make_accelerator(config: TrainConfig):
    """An ``Accelerator`` for the config: bf16 autocast where a GPU has it, gradients
    accumulated over ``gradient_accumulation_steps`` micro-batches, the scheduler stepped once
    per optimizer update whatever the number of processes, and DDP told that some parameters
    (the vision tower on text-only batches) may get no gradient."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    mixed = config.mixed_precision
    if mixed == "auto":
        mixed = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    ddp = DistributedDataParallelKwargs(find_unused_parameters=not config.lora)
    # Several processes and no GPU: accelerate picks DDP over gloo only when told `cpu`.
    cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    sharded = [
        name
        for name, var in (
            ("FSDP", "ACCELERATE_USE_FSDP"),
            ("DeepSpeed", "ACCELERATE_USE_DEEPSPEED"),
        )
        if os.environ.get(var, "").lower() in ("1", "true")
    ]
    if cpu and sharded:
        # `cpu=True` would quietly turn the sharded run into plain DDP.
        raise RuntimeError(
            f"{sharded[0]} was requested (accelerate config) but no GPU is visible; accelerate "
            f"shards only on accelerators. On CPU use DDP over gloo: `accelerate launch "
            f"--multi_gpu --num_processes N -m agents.cli train ...`."
        )
    return Accelerator(
        cpu=cpu,
        mixed_precision=mixed,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        step_scheduler_with_optimizer=False,
        kwargs_handlers=[ddp],
    )


def adapters_only(models, weights, output_dir) -> None:
    """accelerate save hook under LoRA: keep only the trainable (adapter) weights."""
    for model, state in zip(models, weights, strict=False):
        trainable = {name for name, p in model.named_parameters() if p.requires_grad}
        for key in list(state):
            if key not in trainable and key.removeprefix("module.") not in trainable:
                del state[key]


@contextlib.contextmanager
def generation_weights(accelerator, model) -> Iterator[None]:
    """Full weights of the prepared ``model`` for generation: gathered under FSDP1 and
    ZeRO-3, as they are otherwise (FSDP2 gathers its shards in forward hooks). ``model`` may
    be None (before RL is prepared)."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    fsdp1 = kind == DistributedType.FSDP and accelerator.state.fsdp_plugin.fsdp_version == 1
    if fsdp1 and model is not None:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        with FSDP.summon_full_params(model, writeback=False, recurse=True):
            yield
    elif kind == DistributedType.DEEPSPEED and model is not None:
        plugin = accelerator.state.deepspeed_plugin
        if plugin is not None and plugin.zero_stage == 3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(model.parameters())):
                yield
        else:
            yield
    else:
        yield
