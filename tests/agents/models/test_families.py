"""What arft knows about a VLM family: the supported types, the image token, the patch/merge
geometry and the batch extras."""

from __future__ import annotations

import types

import pytest
import torch

from agents.images import ImageBudget
from agents.models import families
from agents.models.tiny import build_image_processor


def test_a_text_only_config_is_no_family_and_an_unknown_vlm_is_refused():
    assert families.check_supported(types.SimpleNamespace(model_type="qwen2"), "x") is False
    qwen = types.SimpleNamespace(model_type="qwen2_5_vl", vision_config=object())
    assert families.check_supported(qwen, "x") is True
    other = types.SimpleNamespace(model_type="llava", vision_config=object())
    with pytest.raises(ValueError, match="'llava' is not supported yet; supported: qwen2_vl"):
        families.check_supported(other, "ckpt")


def test_geometry_is_patch_times_merge_and_the_budget_overrides_the_limits():
    processor = build_image_processor()
    geo = families.geometry(processor, ImageBudget())
    assert geo.factor == processor.patch_size * processor.merge_size
    narrow = families.geometry(processor, ImageBudget(min_pixels=28 * 28, max_pixels=56 * 56))
    assert (narrow.min_pixels, narrow.max_pixels) == (28 * 28, 56 * 56)


def test_image_token_and_batch_extras(tiny_policy):
    assert families.image_token(tiny_policy.tokenizer) == tiny_policy.image_token
    token = tiny_policy.image_token_id
    ids = torch.tensor([[1, token, token, 2]])
    extras = families.batch_extras(ids, token)
    assert extras["mm_token_type_ids"].tolist() == [[0, 1, 1, 0]]
