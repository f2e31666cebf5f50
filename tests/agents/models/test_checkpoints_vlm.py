"""Step checkpoints of a VLM with Qwen's real tokenizer (tiny-qwen): every ``step_N/model``
loads with ``Policy.from_pretrained`` (the same logits as the trained model), and with the
transformers classes that work here without torchvision: ``AutoTokenizer`` and
``AutoImageProcessor(backend="pil")``. ``AutoProcessor`` needs torchvision for Qwen's video
processor; without it, it fails with an ImportError that names torchvision (the README says
what to install)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from accelerate_train import fresh, small_config, weights_digest

from agents.policy import Policy
from agents.training import Trainer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tiny_qwen_policy, tmp_path_factory):
    out = tmp_path_factory.mktemp("qwen_run")
    trainer = Trainer(
        small_config(out, 2, save_every=1, keep_checkpoints=2), policy=fresh(tiny_qwen_policy)
    )
    trainer.train()
    return trainer, out


def test_every_step_checkpoint_holds_a_loadable_model(trained, tiny_qwen_policy):
    trainer, out = trained
    folders = sorted((out / "checkpoints").glob("step_*/model"))
    assert [f.parent.name for f in folders] == ["step_000001", "step_000002"]
    for folder in folders:
        for name in (
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
            "chat_template.jinja",
            "preprocessor_config.json",
        ):
            assert (folder / name).is_file(), (folder, name)
    last = Policy.from_pretrained(folders[-1], device="cpu")
    assert weights_digest(last.model) == weights_digest(trainer.policy.model)
    assert weights_digest(last.model) != weights_digest(tiny_qwen_policy.model)
    assert last.chat_template == tiny_qwen_policy.chat_template
    assert type(last.model).__name__ == "Qwen2_5_VLForConditionalGeneration"


def test_tokenizer_and_image_processor_load_without_torchvision(trained, tiny_qwen_policy):
    from transformers import AutoImageProcessor, AutoTokenizer

    _, out = trained
    folder = out / "checkpoints" / "step_000002" / "model"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert len(tokenizer) == len(tiny_qwen_policy.tokenizer) == 151_669
    assert tokenizer.convert_tokens_to_ids("<|image_pad|>") == tiny_qwen_policy.image_token_id
    processor = AutoImageProcessor.from_pretrained(folder, backend="pil")
    image = np.zeros((56, 56, 3), dtype=np.uint8)
    pixels = processor(images=[image], return_tensors="pt")
    assert pixels["image_grid_thw"].tolist() == [[1, 4, 4]]  # 56 px / 14 px patches


def test_auto_processor_needs_torchvision(trained):
    from transformers import AutoProcessor

    _, out = trained
    folder = out / "checkpoints" / "step_000002" / "model"
    if importlib.util.find_spec("torchvision") is not None:
        assert AutoProcessor.from_pretrained(folder).tokenizer is not None
    else:
        with pytest.raises(ImportError, match="[Tt]orchvision"):
            AutoProcessor.from_pretrained(folder)
