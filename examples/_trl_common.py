"""What the two TRL examples share: tiny-qwen and its processor, the SFT warm start, the
GRPO config and the per-step print. Everything here is TRL's own trainers with small CPU
settings; no arft trainer code."""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def keep_freed_memory() -> None:
    """Let glibc keep freed memory for reuse instead of handing it back to the kernel.

    On CPU, TRL's loss scores every position of a sequence over Qwen's 151k-token vocabulary
    in tiles of hundreds of MB, allocated and freed many times per step. glibc serves each
    with a fresh ``mmap`` whose pages the kernel must fault in and zero again: three SFT
    steps on the multi-turn rows took 22 s user + 28 s sys, and 19 s + 3 s with mmap off and
    no trimming. A no-op where there is no glibc ``mallopt``.
    """
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_max = -1, -4  # glibc's <malloc.h> parameter numbers
    mallopt(m_mmap_max, 0)
    mallopt(m_trim_threshold, 2**30)


keep_freed_memory()


def add_args(parser: argparse.ArgumentParser, **defaults) -> argparse.Namespace:
    """The options both examples take (``defaults`` sets each example's own values)."""
    parser.add_argument("--steps", type=int, default=2, help="GRPO steps")
    parser.add_argument("--rows", type=int, default=4, help="dataset rows (one task each)")
    parser.add_argument("--group", type=int, default=4, help="completions per prompt")
    parser.add_argument("--max-completion-length", type=int, default=40)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--warm-steps", type=int, default=40, help="SFT steps before GRPO")
    parser.add_argument("--warm-batch", type=int, default=4, help="SFT rows per step")
    parser.add_argument("--warm-lr", type=float, default=1e-2)
    parser.add_argument("--warm-max-length", type=int, default=None, help="SFT tokens per row")
    parser.add_argument("--log-completions", action="store_true", help="print TRL's table")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(**defaults)
    return parser.parse_args()


def tiny_qwen(out_dir: str, chat_template: str | None = None):
    """tiny-qwen saved under ``out_dir`` (random weights, Qwen's tokenizer) and its processor."""
    import torch

    from agents.models.tiny_qwen import save_tiny_qwen
    from arft_envs.integrations.trl import qwen_vl_processor

    torch.set_num_threads(1)
    model_dir = save_tiny_qwen(os.path.join(out_dir, "tiny-qwen"))
    return model_dir, qwen_vl_processor(model_dir, chat_template=chat_template)


def warm_start(model, processing_class, rows, out_dir: str, args, steps=None, lr=None, **config):
    """TRL's ``SFTTrainer`` on ``rows`` from ``model`` (a saved model's directory or a model)
    for ``steps`` steps (default ``args.warm_steps``) at ``lr`` (default ``args.warm_lr``);
    the trained model.

    tiny-qwen's weights are random: over Qwen's 151k-token vocabulary it never writes a tag
    or a tool call, so every GRPO reward would be 0, every group's std 0 and GRPO would have
    no signal. A short SFT stage teaches the output format first, as the paper's own SFT
    stage does before its GRPO. ``config`` adds or overrides ``SFTConfig`` fields.
    """
    from trl import SFTConfig, SFTTrainer

    steps = args.warm_steps if steps is None else steps
    fields = {
        "output_dir": out_dir,
        "max_steps": steps,
        "per_device_train_batch_size": args.warm_batch,
        "learning_rate": args.warm_lr if lr is None else lr,
        "lr_scheduler_type": "constant",
        "max_length": args.warm_max_length,
        "logging_steps": max(1, steps // 4),
        "report_to": [],
        "save_strategy": "no",
        "use_cpu": True,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "seed": args.seed,
    }
    if isinstance(model, str | os.PathLike):  # a saved model: TRL loads it, in float32
        model = str(model)
        fields["model_init_kwargs"] = {"dtype": "float32"}
    sft = SFTConfig(**{**fields, **config})
    trainer = SFTTrainer(
        model=model, args=sft, train_dataset=rows, processing_class=processing_class
    )
    result = trainer.train()
    logged = [log for log in trainer.state.log_history if "mean_token_accuracy" in log]
    accuracy = logged[-1]["mean_token_accuracy"] if logged else float("nan")
    print(
        f"warm start: {steps} SFT steps, mean loss {result.training_loss:.3f}, "
        f"last token accuracy {accuracy:.3f}",
        flush=True,
    )
    return trainer.model


def grpo_config(out_dir: str, args, **config):
    """TRL's ``GRPOConfig`` for a few CPU steps: one prompt's group per step, so the logged
    ``reward_std`` is the std of the reward within that group."""
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=out_dir,
        max_steps=args.steps,
        per_device_train_batch_size=args.group,
        num_generations=args.group,
        max_completion_length=args.max_completion_length,
        logging_steps=1,
        learning_rate=1e-4,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        dataloader_num_workers=0,
        temperature=args.temperature,
        disable_tqdm=True,
        seed=args.seed,
        log_completions=args.log_completions,
        **config,
    )


def print_reward():
    """A callback that prints, per GRPO step, the mean reward, the group's reward std and
    (with tools) how many tool calls a completion made on average."""
    from transformers import TrainerCallback

    class PrintReward(TrainerCallback):
        def on_log(self, _args, state, control, logs=None, **kw):
            if not logs or "reward" not in logs:
                return
            line = (
                f"step {state.global_step}: reward {logs['reward']:.4f} "
                f"group_std {logs.get('reward_std', float('nan')):.4f}"
            )
            if "tools/call_frequency" in logs:
                line += f" tool_calls {logs['tools/call_frequency']:.4f}"
            print(line, flush=True)

    return PrintReward()
