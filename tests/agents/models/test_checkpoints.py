"""Step checkpoints users can load: ``checkpoints/step_N/model`` holds the trained model (or its
LoRA adapters) with tokenizer, chat template and image processor, beside accelerate's state."""

from __future__ import annotations

import torch
from accelerate_train import fresh, small_config, weights_digest

from agents.policy import Policy
from agents.training import Trainer

torch.set_num_threads(1)


def test_step_checkpoint_holds_a_model_that_from_pretrained_loads(tiny_policy, tmp_path):
    trainer = Trainer(small_config(tmp_path, 1, save_every=1), policy=fresh(tiny_policy))
    trainer.train()
    folder = tmp_path / "checkpoints" / "step_000001" / "model"
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "chat_template.jinja",
        "preprocessor_config.json",
    ):
        assert (folder / name).is_file(), name
    loaded = Policy.from_pretrained(folder, device="cpu")
    assert weights_digest(loaded.model) == weights_digest(trainer.policy.model)
    assert weights_digest(loaded.model) != weights_digest(tiny_policy.model)  # it trained
    assert loaded.chat_template == tiny_policy.chat_template
    assert loaded.geometry == tiny_policy.geometry
    # What works without torchvision: the tokenizer and the PIL image processor.
    from transformers import AutoImageProcessor, AutoTokenizer

    assert AutoTokenizer.from_pretrained(folder).get_vocab() == tiny_policy.tokenizer.get_vocab()
    processor = AutoImageProcessor.from_pretrained(folder, backend="pil")
    assert processor.patch_size == 14 and processor.merge_size == 2


def test_lora_step_checkpoint_holds_adapters_that_load_on_the_base(tiny_policy, tmp_path):
    trainer = Trainer(small_config(tmp_path, 1, lora=True, lora_r=4), policy=fresh(tiny_policy))
    trainer.train()
    folder = tmp_path / "checkpoints" / "step_000001" / "model"
    assert (folder / "adapter_config.json").is_file() and (folder / "tokenizer.json").is_file()
    loaded = Policy.from_pretrained("tiny", device="cpu", adapter=folder)
    assert weights_digest(loaded.model) == weights_digest(trainer.policy.model)
