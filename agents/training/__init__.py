"""Training on accelerate: one on-policy loop for a CPU, one GPU, or many processes, whatever
the algorithm (:mod:`agents.algorithms`).

Visual-ARFT trains with GRPO on pre-split, single-turn rows and never runs a tool (paper.md
§3.4–3.5). Here every step plays whole episodes against a registered env, tools executed for
real, and learns from their returns:

1. **Rollout.** Each process plays ``groups_per_step`` groups of ``group_size`` episodes with
   the current policy (:func:`agents.rollout.collect`). The members of a group share a task.
   The tasks come from a seed stream fixed by ``(seed, step, process)``: the step counter is
   the data position, so a resumed run sees exactly the tasks it would have seen.
2. **Advantages.** The algorithm's (GRPO: each episode's return against its group,
   ``(R - mean_g) / (std_g + 1e-4)``, or unscaled, Dr. GRPO; every model token of the
   episode gets that advantage).
3. **Reference.** When the algorithm's loss has a KL term, the KL is taken to the model as it
   was when RL started: a frozen copy, or under LoRA the same network with its adapters off.
4. **Update.** ``inner_epochs`` passes over the step's episodes, each split into
   ``num_minibatches`` optimizer updates; a minibatch is processed in
   ``gradient_accumulation_steps`` micro-batches whose gradients add up to the minibatch's.
   With one epoch and one minibatch (the paper) the importance ratio is exactly 1.
5. **Log, sample, checkpoint.** A line per step in ``metrics.jsonl`` (and tensorboard, wandb);
   every ``sample_every`` steps an HTML page of episodes; every ``save_every`` steps a
   checkpoint that ``resume=True`` continues from, neither repeating nor skipping a step.

An optional supervised warm start (:mod:`agents.training.warm_start`) runs first when
``sft_steps > 0``. Options any algorithm can use, all off by default, hook into these steps
(:mod:`agents.training.enhancements`): a curriculum over task difficulty, an adaptive or
scheduled KL coefficient, NoisyRollout-style image augmentation, online group filtering, and
the paper's ground-truth injection (:mod:`agents.training.paper`).

Run layout (``output``)::

    config.json            the resolved TrainConfig
    metrics.jsonl          one JSON line per RL step (sft_metrics.jsonl for the warm start)
    tensorboard/           event files (report_to includes "tensorboard")
    samples/step_*.html    episodes with their turns' text, images and rewards
    checkpoints/sft/model  the warm-started model (the RL reference when sft_steps > 0)
    checkpoints/step_*/    model or adapters, optimizer, scheduler, RNG, trainer_state.json
    final/                 the trained model (adapters under LoRA)

Modules: :mod:`~agents.training.config` (TrainConfig), :mod:`~agents.training.trainer` (the
loop), :mod:`~agents.training.warm_start`, :mod:`~agents.training.batch`,
:mod:`~agents.training.run_dir`, :mod:`~agents.training.metrics`,
:mod:`~agents.training.distributed`, :mod:`~agents.training.optim`.
"""

from agents.training.config import ConfigError, TrainConfig
from agents.training.distributed import make_accelerator
from agents.training.optim import lr_factor
from agents.training.run_dir import RunDir
from agents.training.trainer import GRPOTrainer, Trainer

__all__ = [
    "ConfigError",
    "GRPOTrainer",
    "RunDir",
    "TrainConfig",
    "Trainer",
    "lr_factor",
    "make_accelerator",
]
