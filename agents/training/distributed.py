"""Accelerate for a run: the ``Accelerator`` a config asks for, the adapters-only save hook
under LoRA, and the full weights for generation under FSDP / ZeRO-3.

**Mixed precision stays inside the run.** Under bf16/fp16, accelerate's ``prepare`` replaces
the model's ``forward`` with one that always autocasts (and casts the outputs to float32), and
nothing undoes it: a model evaluated after training (``arft eval`` in the same process, the
demo's held-out measures) kept running in bf16 whatever its caller asked. The run's
accelerator (:func:`make_accelerator`) therefore prepares models without that patch. Nothing
of the run loses autocast by it: every forward of a run already sits inside
``accelerator.autocast()`` (the rollout, the reference and old log-probs, the update, the SFT
warm start, the PPO critic), and every reader of the outputs takes float32 of the logits
(or values) before its ``log_softmax`` or loss.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

import torch

from agents.training.config import TrainConfig


def resolve_mixed_precision(mixed_precision: str) -> str:
    """The accelerate precision that ``mixed_precision`` means on this machine.

    ``"auto"`` is ``"bf16"`` on a GPU that supports bfloat16 and, without a GPU, on a CPU that
    computes bfloat16 natively (:func:`agents.models.logprobs.cpu_has_fast_bf16`: the
    ``avx512_bf16`` or ``amx_bf16`` flags of x86, ``bf16`` in ARM's ``Features``, read from
    ``/proc/cpuinfo``), where bf16 matmuls are several times faster than float32 ones; else
    ``"no"`` (float32: a CPU that only emulates bf16 runs it slower than float32). Other
    values are returned as they are. Weights and optimizer state stay in ``dtype`` either
    way; autocast only lowers the matmuls, and the log-probs are still taken by a float32
    ``log_softmax`` of the logits (:mod:`agents.models.logprobs`)."""
    if mixed_precision != "auto":
        return mixed_precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    from agents.models.logprobs import cpu_has_fast_bf16

    return "bf16" if cpu_has_fast_bf16() else "no"


def make_accelerator(config: TrainConfig):
    """An ``Accelerator`` for the config: the precision :func:`resolve_mixed_precision` gives
    (``auto``: bf16 autocast on a GPU or a CPU that has fast bf16), gradients
    accumulated over ``gradient_accumulation_steps`` micro-batches, the scheduler stepped once
    per optimizer update whatever the number of processes, and DDP told that some parameters
    (the vision tower on text-only batches) may get no gradient. Its ``prepare`` leaves the
    models' ``forward`` as it is (see the module docstring): autocast is
    ``accelerator.autocast()``'s, and ends with the run."""
    from accelerate.utils import DistributedDataParallelKwargs

    mixed = resolve_mixed_precision(config.mixed_precision)
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
    _release_other_precision(mixed)
    return _run_accelerator_class()(
        cpu=cpu,
        mixed_precision=mixed,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        step_scheduler_with_optimizer=False,
        kwargs_handlers=[ddp],
    )


@functools.cache
def _run_accelerator_class() -> type:
    """``Accelerator`` whose ``prepare`` does not wrap a model's ``forward`` in autocast."""
    from accelerate import Accelerator

    class RunAccelerator(Accelerator):
        def prepare_model(self, model, device_placement=None, evaluation_mode=False):
            # accelerate patches forward exactly when native_amp is set; autocast() itself
            # reads native_amp too, so it is lowered only for the duration of this call.
            native, self.native_amp = self.native_amp, False
            try:
                return super().prepare_model(model, device_placement, evaluation_mode)
            finally:
                self.native_amp = native

    return RunAccelerator


def _release_other_precision(mixed: str) -> None:
    """Let a second run in this process use another precision than the first.

    accelerate keeps one ``AcceleratorState`` per process and refuses an ``Accelerator`` whose
    precision differs from it ("AcceleratorState has already been initialized and cannot be
    changed"), so a float32 run after a bf16 one (a notebook, the test suite) would fail. In a
    single, non-distributed process the state holds nothing but settings: it is cleared so the
    new ``Accelerator`` sets its own (an earlier accelerator then autocasts as the new one)."""
    from accelerate.state import AcceleratorState, PartialState

    if not AcceleratorState._shared_state or PartialState().num_processes > 1:
        return
    if AcceleratorState().mixed_precision != mixed:
        AcceleratorState._reset_state()


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
