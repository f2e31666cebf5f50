"""Train tiny-qwen on MATCoding stepwise rows with TRL's own GRPOTrainer (CPU, offline).

The dataset and rewards come from :mod:`arft_envs.integrations.trl`: the env's stepwise rows
(image + prompt) and its own format/accuracy rewards, live (code completions really run in
the sandbox). Prints the mean reward and the per-group std of every step.

    python examples/trl_single_turn.py --steps 2
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def build_processor(model_dir):
    """Qwen2.5-VL's processor from the saved tokenizer and image processor.

    Built by hand because ``AutoProcessor`` also loads Qwen's video processor, which needs
    torchvision (not a dependency of arft); these examples feed images only.
    """
    from transformers import AutoImageProcessor, AutoTokenizer, Qwen2_5_VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class ImageOnlyQwenProcessor(Qwen2_5_VLProcessor):
        """Qwen2.5-VL's processor without its video half."""

        attributes = ["image_processor", "tokenizer"]

        def __init__(self, image_processor, tokenizer, chat_template=None):
            self.image_token = "<|image_pad|>"
            self.video_token = "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return ImageOnlyQwenProcessor(
        AutoImageProcessor.from_pretrained(model_dir), tokenizer, tokenizer.chat_template
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--group", type=int, default=4, help="completions per prompt")
    parser.add_argument("--max-completion-length", type=int, default=16)
    args = parser.parse_args()

    import torch
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from agents.models.tiny_qwen import save_tiny_qwen
    from arft_envs.integrations.trl import reward_functions, stepwise_dataset

    torch.set_num_threads(1)
    dataset = stepwise_dataset("MATCoding-v0", n=args.rows, seed=0)

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
        processor = build_processor(model_dir)
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
        trainer = GRPOTrainer(
            model=str(model_dir),
            reward_funcs=reward_functions("live"),
            args=config,
            train_dataset=dataset,
            processing_class=processor,
            callbacks=[PrintReward()],
        )
        trainer.train()


if __name__ == "__main__":
    main()
