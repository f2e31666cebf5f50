"""``tiny-qwen``: the tiny Qwen2.5-VL model with Qwen's real 151k tokenizer and its template,
extended for image parts; it runs the rollout as ``tiny`` does (images in user and tool turns,
token-in/token-out, stop strings, the image budget) and saves as a loadable checkpoint."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from agents.images import ImageBudget
from agents.models.tiny_qwen import (
    VISION_MARKUP,
    build_tiny_qwen,
    extend_chat_template,
    tokenizer_dir,
)
from agents.policy import ModelInput, Policy
from agents.rollout import RolloutConfig, collect, make_envs

torch.set_num_threads(1)

MESSAGES = [
    {"role": "system", "content": ({"type": "text", "text": "S"},)},
    {"role": "user", "content": ({"type": "image", "index": 0}, {"type": "text", "text": "Q"})},
    {
        "role": "assistant",
        "content": ({"type": "text", "text": "<think> t </think>\n<code> c </code>"},),
    },
    {"role": "tool", "content": ({"type": "text", "text": "T"}, {"type": "image", "index": 1})},
]


@pytest.fixture
def qwen_policy(tiny_qwen_policy):
    return tiny_qwen_policy  # built once per test process (tests/agents/conftest.py)


def test_real_vocabulary_and_special_tokens(qwen_policy):
    tok = qwen_policy.tokenizer
    assert len(tok) == 151_669
    for token in (
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|image_pad|>",
        "<tool_call>",
        "</tool_call>",
        "<think>",
        "</think>",
    ):
        assert len(tok(token, add_special_tokens=False)["input_ids"]) == 1, token
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    text = "img = cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE) — 中文 🙂"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_model_is_small_tied_and_deterministic():
    a, _, _ = build_tiny_qwen(seed=1)
    b, _, _ = build_tiny_qwen(seed=1)
    assert type(a).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert a.get_output_embeddings().weight is a.get_input_embeddings().weight
    assert a.get_input_embeddings().weight.shape == (151_669, 64)
    n = sum(p.numel() for p in a.parameters())
    assert 9_000_000 < n < 11_000_000, n
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_template_renders_images_in_user_and_tool_turns_and_keeps_turns_verbatim(qwen_policy):
    text = qwen_policy.render(MESSAGES, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nS<|im_end|>\n"
        f"<|im_start|>user\n{VISION_MARKUP}Q<|im_end|>\n"
        "<|im_start|>assistant\n<think> t </think>\n<code> c </code><|im_end|>\n"
        f"<|im_start|>user\n<tool_response>\nT{VISION_MARKUP}\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_template_keeps_the_real_tools_block_and_tool_calls(qwen_policy):
    tools = [
        {
            "type": "function",
            "function": {"name": "search", "description": "d", "parameters": {"type": "object"}},
        }
    ]
    msgs = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Q"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"type": "function", "function": {"name": "search", "arguments": {"query": "x"}}}
            ],
        },
    ]
    text = qwen_policy.tokenizer.apply_chat_template(
        msgs, chat_template=qwen_policy.chat_template, tools=tools, tokenize=False
    )
    assert text.startswith("<|im_start|>system\nS\n\n# Tools\n")
    assert '"name": "search"' in text and "</tools>" in text
    assert '<tool_call>\n{"name": "search", "arguments": {"query": "x"}}\n</tool_call>' in text


def test_extension_fails_loudly_on_another_template():
    with pytest.raises(ValueError, match="template changed"):
        extend_chat_template("{{ messages }}")
    real = (tokenizer_dir() / "tokenizer_config.json").read_text()
    assert "arft_content" not in real  # the package's own template is text-only


def _image_input(policy, size):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
    from agents.images import resize

    shown = resize(image, policy.geometry.fit(*size))
    text = policy.render(MESSAGES[:2], add_generation_prompt=True)
    pixels, grid = policy.process_images([shown])
    return ModelInput(policy.encode(text, [policy.geometry.tokens(*shown.shape[:2])]), pixels, grid)


@pytest.mark.parametrize("size, tokens", [((56, 84), 6), ((28, 28), 4), ((600, 600), 64)])
def test_image_pads_match_the_patch_and_merge_geometry(qwen_policy, size, tokens):
    x = _image_input(qwen_policy, size)
    tok = qwen_policy.tokenizer
    ids = x.input_ids
    start = ids.index(tok.convert_tokens_to_ids("<|vision_start|>"))
    end = ids.index(tok.convert_tokens_to_ids("<|vision_end|>"))
    assert ids[start + 1 : end] == [qwen_policy.image_token_id] * tokens
    assert int(x.image_grid_thw.prod()) // 4 == tokens  # 14-px patches merged 2x2
    with torch.no_grad():  # image features and image tokens match
        qwen_policy.model(**qwen_policy.collate([x]), use_cache=False)


def test_generation_logprobs_equal_a_forward_pass_and_stop_strings_cut(qwen_policy):
    inputs = [_image_input(qwen_policy, (56, 84)), _image_input(qwen_policy, (28, 56))]
    torch.manual_seed(0)
    gens = qwen_policy.generate(inputs, max_new_tokens=12, stop_strings=(" ",))
    full = [
        ModelInput(x.input_ids + g.token_ids, x.pixel_values, x.image_grid_thw)
        for x, g in zip(inputs, gens, strict=True)
    ]
    masks = [
        [0] * len(x.input_ids) + [1] * len(g.token_ids) for x, g in zip(inputs, gens, strict=True)
    ]
    fresh = qwen_policy.sequence_logprobs(full, masks)
    for x, g, lp in zip(inputs, gens, fresh, strict=True):
        np.testing.assert_allclose(lp[len(x.input_ids) :], g.logprobs, atol=1e-4, rtol=0)
        if g.finish_reason == "stop":
            tok = qwen_policy.tokenizer
            assert " " in tok.decode(g.token_ids) and " " not in tok.decode(g.token_ids[:-1])


def test_rollout_with_tool_images_retokenisation_and_the_budget(qwen_policy):
    budget = 48
    policy = dataclasses.replace(qwen_policy, image_budget=ImageBudget(max_image_tokens=budget))
    envs = make_envs("ToyImageTool-v0", 2, "sync", max_turns=4)
    try:
        config = RolloutConfig(max_new_tokens=6, check_retokenization=True, seed=0)
        trajs = collect(policy, envs, config, groups=1)
    finally:
        envs.close()
    fresh = policy.sequence_logprobs(
        [t.model_input() for t in trajs], [t.assistant_mask for t in trajs]
    )
    for t, lp in zip(trajs, fresh, strict=True):
        assert t.retokenization["status"] in ("exact", "explained")
        assert t.input_ids.count(policy.image_token_id) <= budget
        assert t.input_ids.count(policy.image_token_id) == int(t.image_grid_thw.prod(-1).sum()) // 4
        assert len(t.image_slots) >= 2  # tool turns brought images
        mask = np.array(t.assistant_mask, dtype=bool)
        np.testing.assert_allclose(np.array(lp)[mask], np.array(t.old_logprobs)[mask], atol=1e-4)


def test_checkpoint_round_trips(qwen_policy, tmp_path):
    path = qwen_policy.save_pretrained(tmp_path / "ckpt")
    loaded = Policy.from_pretrained(path, device="cpu")
    assert loaded.chat_template == qwen_policy.chat_template
    assert loaded.geometry == qwen_policy.geometry
    assert loaded.model.get_output_embeddings().weight is loaded.model.get_input_embeddings().weight
    for x, y in zip(
        loaded.model.state_dict().values(), qwen_policy.model.state_dict().values(), strict=True
    ):
        assert torch.equal(x, y)
    assert loaded.render(MESSAGES) == qwen_policy.render(MESSAGES)
