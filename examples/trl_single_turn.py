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
   temperature 1: some completions now parse and some do not, some hold words of the gold
   answer and some none, so rewards differ within a group and the advantages are non-zero.

Prints, per GRPO step, the mean reward and the group's reward std (one group per step).
Deterministic on CPU for a given ``--seed``.

    python examples/trl_single_turn.py --steps 2
"""

from __future__ import annotations

import argparse
import os
import tempfile

import _trl_common as common


def text_only(prompt):
    """A TRL prompt with its image placeholders dropped (each message's text joined)."""
    return [
        {
            "role": m["role"],
            "content": "".join(p["text"] or "" for p in m["content"] if p["type"] == "text"),
        }
        for m in prompt
    ]


def main() -> None:
    args = common.add_args(argparse.ArgumentParser(description=__doc__), warm_max_length=64)

    from datasets import Dataset
    from trl import GRPOTrainer

    from arft_envs.integrations.trl import reward_functions, stepwise_dataset

    # answer steps: their gold turns fit in a short completion budget, and their accuracy
    # (the paper's set F1 against the gold answer) gives partial credit for right words
    dataset = stepwise_dataset("MATCoding-v0", n=args.rows, seed=0, kinds=("answer",))
    # the warm start's rows: each row's text and its gold step (no images; see the docstring)
    rows = Dataset.from_dict(
        {
            "prompt": [text_only(p) for p in dataset["prompt"]],
            "completion": [[{"role": "assistant", "content": g}] for g in dataset["gold_step"]],
        }
    )

    with tempfile.TemporaryDirectory() as tmp:
        model_dir, processor = common.tiny_qwen(tmp)
        model = common.warm_start(
            model_dir,
            processor.tokenizer,
            rows,
            os.path.join(tmp, "sft"),
            args,
            truncation_mode="keep_end",
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=reward_functions("live"),
            args=common.grpo_config(os.path.join(tmp, "out"), args),
            train_dataset=dataset,
            processing_class=processor,
            callbacks=[common.print_reward()],
        )
        trainer.train()


if __name__ == "__main__":
    main()
