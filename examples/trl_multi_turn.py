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
   episode (``<tool_call>{"name": "problem", ...}</tool_call>``). tiny-qwen's weights are
   random: it never writes a parseable call, so no tool would ever run and every episode
   would return 0. As in ``trl_single_turn.py`` the warm start trains on text only, each
   sequence cut to its last ``--warm-max-length`` tokens, to stay cheap on CPU.
2. **GRPO** with TRL's ``GRPOTrainer`` and ``environment_factory``, sampled at
   ``--temperature`` (0.5).

**Not yet learning.** Measured (seed 0, 60 SFT steps, teacher-forced token accuracy 0.87):
in GRPO no completion parsed as a call (``tools/call_frequency`` 0; at T = 0.5 and at
T = 1), so every return is 0 and the within-group std is 0; 120 SFT steps (token accuracy
0.94) gave the same. The text-only warm start does
not carry over to GRPO's context, which adds TRL's tools block and the image tokens: the
model starts ``<tool_call>`` and then writes broken JSON. The next step is a warm start on
the full GRPO prompt (the VLM processor, the ``tools`` column, the image), several times
dearer per step on CPU. The example does show the rest working end to end: TRL's tool loop
over the env's tools, the task image reaching the VLM through ``reset``, the env's return
as the reward.

Prints, per GRPO step, the mean reward and the mean within-group std of the reward.

    python examples/trl_multi_turn.py --steps 2
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

TASK = "Repair the image with the tools, then answer."


def expert_first_calls(seeds):
    """(opening text, first expert call as Qwen's ``<tool_call>`` text) for each seed."""
    import gymnasium as gym

    import arft_envs  # noqa: F401
    from arft_envs.experts import ScriptedExpert

    env = gym.make("MATCoding-v0", action_format="tool_calls")
    pairs = []
    for seed in seeds:
        env.reset(seed=seed)
        call = ScriptedExpert().act(env)["tool_calls"][0]["function"]
        opening = "".join(p.get("text") or "" for m in env.unwrapped.messages for p in m["content"])
        pairs.append((opening, f"<tool_call>\n{json.dumps(call)}\n</tool_call>"))
    env.close()
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2, help="GRPO steps")
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--group", type=int, default=4, help="completions per prompt")
    parser.add_argument("--max-completion-length", type=int, default=64)
    parser.add_argument("--max-tool-calls", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--warm-steps", type=int, default=60, help="SFT steps before GRPO")
    parser.add_argument("--warm-lr", type=float, default=2e-2)
    parser.add_argument("--warm-max-length", type=int, default=48)
    parser.add_argument("--log-completions", action="store_true", help="print TRL's table")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer
    from trl.chat_template_utils import qwen3_vl_chat_template

    from agents.models.tiny_qwen import save_tiny_qwen
    from arft_envs.integrations.trl import environment_factory, qwen_vl_processor

    torch.set_num_threads(1)
    seeds = list(range(args.rows))
    prompt = [{"role": "user", "content": TASK}]
    dataset = Dataset.from_dict({"prompt": [prompt] * args.rows, "seed": seeds})

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
        processor = qwen_vl_processor(model_dir, chat_template=qwen3_vl_chat_template)

        pairs = expert_first_calls(seeds)
        warm_rows = Dataset.from_dict(
            {
                "prompt": [[{"role": "user", "content": TASK + text}] for text, _ in pairs],
                "completion": [[{"role": "assistant", "content": call}] for _, call in pairs],
            }
        )
        warm = SFTTrainer(
            model=str(model_dir),
            args=SFTConfig(
                output_dir=os.path.join(tmp, "sft"),
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
            ),
            train_dataset=warm_rows,
            processing_class=processor.tokenizer,
        )
        result = warm.train()
        print(f"warm start: {args.warm_steps} SFT steps, mean loss {result.training_loss:.3f}")

        config = GRPOConfig(
            output_dir=os.path.join(tmp, "out"),
            max_steps=args.steps,
            per_device_train_batch_size=args.group,
            num_generations=args.group,
            max_completion_length=args.max_completion_length,
            max_tool_calling_iterations=args.max_tool_calls,
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
            model=warm.model,
            args=config,
            train_dataset=dataset,
            processing_class=processor,
            environment_factory=environment_factory("MATCoding-v0"),
            callbacks=[PrintReward()],
        )
        trainer.train()


if __name__ == "__main__":
    main()
