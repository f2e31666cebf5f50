"""Multi-turn: TRL's GRPOTrainer plays MATCoding episodes through arft's tools (CPU, offline).

:func:`arft_envs.integrations.trl.environment_factory` wraps the env in
``action_format="tool_calls"``: its tools (problem, code, answer) become TRL tool methods
and the episode's reward comes from the env (``get_reward``). Prints the mean reward and the
per-group std of every step.

    python examples/trl_multi_turn.py --steps 2
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--group", type=int, default=4, help="completions per prompt")
    parser.add_argument("--max-completion-length", type=int, default=16)
    args = parser.parse_args()

    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer
    from trl.chat_template_utils import qwen2_5_chat_template

    from agents.models.tiny_qwen import save_tiny_qwen
    from arft_envs.integrations.trl import environment_factory

    torch.set_num_threads(1)
    prompt = [{"role": "user", "content": "Repair the image with the tools, then answer."}]
    dataset = Dataset.from_dict({"prompt": [prompt] * args.rows, "seed": list(range(args.rows))})

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
            temperature=1.0,
            disable_tqdm=True,
            model_init_kwargs={"dtype": "float32"},
        )
        # Qwen2.5's own chat template (TRL's copy), whose Hermes <tool_call> replies TRL parses;
        # tiny-qwen's tokenizer carries arft's extended template, which TRL does not recognise.
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        tokenizer.chat_template = qwen2_5_chat_template
        trainer = GRPOTrainer(
            model=str(model_dir),
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            environment_factory=environment_factory("MATCoding-v0"),
            callbacks=[PrintReward()],
        )
        trainer.train()


if __name__ == "__main__":
    main()
