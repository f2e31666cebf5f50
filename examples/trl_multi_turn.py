"""Multi-turn: TRL's GRPOTrainer plays MATCoding episodes through arft's tools (CPU, offline).

:func:`arft_envs.integrations.trl.environment_factory` wraps the env in
``action_format="tool_calls"``: its tools (problem, code, answer) become TRL tool methods,
the episode's reward comes from the env (``get_reward``), and images reach the model: the
task's image in the opening turn and the repaired image in a ``code`` call's reply, as TRL
content blocks, fed to tiny-qwen (a Qwen2.5-VL) through its processor. The chat template is
TRL's ``qwen3_vl`` one, which renders images in user and tool turns and whose
``<tool_call>`` replies TRL parses (tiny-qwen's own template is arft's extension, which TRL
does not recognise).

Two TRL stages, no arft trainer code:

1. **Warm start** with TRL's ``SFTTrainer`` on the scripted expert's first call of each
   episode (``<tool_call>{"name": "problem", ...}</tool_call>``), in exactly the prompt
   GRPO renders: :func:`~arft_envs.integrations.trl.warm_start_dataset` builds each row as
   ``GRPOTrainer`` does (the row's prompt plus ``reset``'s opening turn, TRL's tools block in
   the system turn, the task image's tokens). tiny-qwen's random weights never write a
   parseable call, so without it no tool would run and every return would be 0. It runs
   in two parts, because TRL's CPU loss scores every position of a row over the 151k
   vocabulary and the rows are ~700 tokens long:

   a. ``--warm-text-steps`` steps on the text of each row's last 48 tokens (the end of the
      query, the generation prompt and the call): cheap, and enough to learn the call's
      JSON (token accuracy 0.92);
   b. ``--warm-steps`` steps on the whole rows, images included, to carry the call over to
      GRPO's long context. Part (a) alone does not: in GRPO's context its model starts
      ``<tool_call>`` and writes broken JSON, so no call parses (measured with 60 and 120
      text-only steps: tool calls 0 in GRPO). Part (b) alone learns too slowly to afford
      (40 steps: token accuracy 0.37, no sampled call parses).
2. **GRPO** with TRL's ``GRPOTrainer`` and ``environment_factory``, sampled at
   ``--temperature`` 0.5, for ``--steps`` 4 (each task's group once). The four tasks
   (``--seeds``) all have one problem, overexposure: a call that parses and names it
   returns 1, a broken or wrong one 0, and a group that holds both has reward spread.

Prints, per GRPO step, the mean reward, the group's reward std and the tool calls per
completion (TRL's ``tools/call_frequency``). Deterministic on CPU for a given ``--seed``.

    python examples/trl_multi_turn.py
"""

from __future__ import annotations

import argparse
import os
import tempfile

import _trl_common as common

TASK = "Repair the image with the tools, then answer."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--warm-text-steps", type=int, default=80, help="SFT steps on the rows' last tokens"
    )
    parser.add_argument("--warm-text-lr", type=float, default=2e-2)
    parser.add_argument(
        "--seeds", default="1,9,39,41", help="the rows' task seeds (all overexposure tasks)"
    )
    args = common.add_args(
        parser,
        steps=4,
        max_completion_length=64,
        temperature=0.5,
        warm_steps=16,
        warm_batch=2,
        warm_lr=1e-2,
        warm_max_length=None,
    )

    from datasets import Dataset
    from trl import GRPOTrainer
    from trl.chat_template_utils import qwen3_vl_chat_template

    from arft_envs.integrations.trl import environment_factory, warm_start_dataset

    # one task per row (the row's seed picks the episode's task in reset()), all four with
    # one problem, overexposure: tiny-qwen's random vision tower cannot tell images apart,
    # so the warm start teaches one call. (Seeds 0-3, four different diagnoses: the calls
    # parse, 0.25-0.75 per completion, but none names its task's problems: reward 0.)
    seeds = [int(x) for x in args.seeds.split(",")]
    dataset = Dataset.from_dict(
        {"prompt": [[{"role": "user", "content": TASK}]] * len(seeds), "seed": seeds}
    )
    environment = environment_factory("MATCoding-v0")

    with tempfile.TemporaryDirectory() as tmp:
        model_dir, processor = common.tiny_qwen(tmp, chat_template=qwen3_vl_chat_template)
        rows = warm_start_dataset(environment, dataset, processor)
        # stage 1, cheap: the call's JSON, from the text of each row's last 48 tokens
        model = common.warm_start(
            str(model_dir),
            processor.tokenizer,
            rows.remove_columns("images"),
            os.path.join(tmp, "sft-text"),
            args,
            steps=args.warm_text_steps,
            lr=args.warm_text_lr,
            max_length=48,
            truncation_mode="keep_end",
        )
        # stage 2: the same call in GRPO's whole context (tools block, image tokens)
        model = common.warm_start(model, processor, rows, os.path.join(tmp, "sft"), args)
        trainer = GRPOTrainer(
            model=model,
            args=common.grpo_config(os.path.join(tmp, "out"), args, max_tool_calling_iterations=1),
            train_dataset=dataset,
            processing_class=processor,
            environment_factory=environment,
            callbacks=[common.print_reward()],
        )
        trainer.train()


if __name__ == "__main__":
    main()
