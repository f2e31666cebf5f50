"""Train tiny-qwen on MATCoding stepwise rows with TRL's own trainers (CPU, offline).

The dataset and rewards come from :mod:`arft_envs.integrations.trl`: the env's stepwise rows
(image + prompt) and its own format/accuracy rewards, live (a code completion really runs in
the sandbox). Two TRL stages, no arft trainer code:

1. **Warm start** with TRL's ``SFTTrainer`` on the rows' gold steps. tiny-qwen's weights are
   random: over Qwen's 151k-token vocabulary it never writes ``<think>…</think><problem>…``,
   so every GRPO completion would score 0, every group's reward std would be 0 and GRPO
   would have no signal. The SFT stage teaches the output format, as the paper's own SFT
   stage does before its GRPO. To keep it cheap it trains on the text only, each sequence
   cut to its last ``--warm-max-length`` tokens (``truncation_mode="keep_end"``: the end of
   the prompt, where the reasoning chain is, and the whole gold step); the image tokens sit
   at the start of the prompt and are cut, which the text-only warm start does not need.
2. **GRPO** with TRL's ``GRPOTrainer`` on the same rows, images included, sampled at
   temperature 1: some completions now parse and some do not, some diagnoses are right and
   some wrong, so rewards differ within a group and the advantages are non-zero.

Prints, per GRPO step, the mean reward and the mean within-group std of the reward.
Deterministic on CPU for a given ``--seed``.

    python examples/trl_single_turn.py --steps 2
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def text_only(prompt):
    """A TRL prompt with its image placeholders dropped (each message's text joined)."""
    return [
        {
            "role": m["role"],
            "content": "".join(p["text"] or "" for p in m["content"] if p["type"] == "text"),
        }
        for m in prompt
    ]


def warm_start(model_dir, tokenizer, dataset, out_dir, args):
    """TRL's SFTTrainer on the rows' gold steps (text only, each sequence's last tokens)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    rows = Dataset.from_dict(
        {
            "prompt": [text_only(p) for p in dataset["prompt"]],
            "completion": [[{"role": "assistant", "content": g}] for g in dataset["gold_step"]],
        }
    )
    config = SFTConfig(
        output_dir=out_dir,
        max_steps=args.warm_steps,
        per_device_train_batch_size=args.rows,
        learning_rate=args.warm_lr,
        lr_scheduler_type="constant",
        max_length=args.warm_max_length,
        truncation_mode="keep_end",
        logging_steps=max(1, args.warm_steps // 4),
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=args.seed,
        model_init_kwargs={"dtype": "float32"},
    )
    trainer = SFTTrainer(
        model=str(model_dir), args=config, train_dataset=rows, processing_class=tokenizer
    )
    result = trainer.train()
    print(f"warm start: {args.warm_steps} SFT steps, mean loss {result.training_loss:.3f}")
    return trainer.model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2, help="GRPO steps")
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--group", type=int, default=4, help="completions per prompt")
    parser.add_argument("--max-completion-length", type=int, default=40)
    parser.add_argument("--warm-steps", type=int, default=40, help="SFT steps before GRPO")
    parser.add_argument("--warm-lr", type=float, default=1e-2)
    parser.add_argument("--warm-max-length", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--log-completions", action="store_true", help="print TRL's table")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from agents.models.tiny_qwen import save_tiny_qwen
    from arft_envs.integrations.trl import qwen_vl_processor, reward_functions, stepwise_dataset

    torch.set_num_threads(1)
    # answer steps: their gold turns fit in a short completion budget, and their accuracy
    # (the paper's set F1 against the gold answer) gives partial credit for right words
    dataset = stepwise_dataset("MATCoding-v0", n=args.rows, seed=0, kinds=("answer",))

    class PrintReward(TrainerCallback):
        def on_log(self, _args, state, control, logs=None, **kw):
            if logs and "reward" in logs:
                print(
                    f"step {state.global_step}: reward {logs['reward']:.4f} "
                    f"group_std {logs.get('reward_std', float('nan')):.4f}",
                    flush=True,
                )

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_tiny_qwen(os.path.join(tmp, "tiny-qwen"))
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = warm_start(model_dir, tokenizer, dataset, os.path.join(tmp, "sft"), args)
        config = GRPOConfig(
            output_dir=os.path.join(tmp, "out"),
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
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=reward_functions("live"),
            args=config,
            train_dataset=dataset,
            processing_class=qwen_vl_processor(model_dir),
            callbacks=[PrintReward()],
        )
        trainer.train()


if __name__ == "__main__":
    main()
