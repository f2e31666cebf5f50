"""The offline tiny model: deterministic, small, a real checkpoint, a tokenizer that round-trips."""

from __future__ import annotations

import pytest
import torch

from agents.models.tiny import SPECIAL_TOKENS, TinySpec, build_tiny
from agents.policy import Policy

TRICKY = [
    "",
    "plain ascii",
    "<think> a </think>\n<answer> 42 </answer>",
    "héllo wörld — ß",
    "中文字符，发票号码：12345。",
    "emoji 🙂🚀 and combining é",
    "\t\ttabs\r\nand\x00nul\x1b[0m",
    "```python\nimport cv2\nimg = cv2.imread('path_to_input_image.jpg')\n```",
]


def test_build_is_deterministic_and_small():
    a, tok_a, _ = build_tiny(seed=3)
    b, tok_b, _ = build_tiny(seed=3)
    c, _, _ = build_tiny(seed=4)
    assert tok_a.get_vocab() == tok_b.get_vocab()
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters(), strict=True))
    n = sum(p.numel() for p in a.parameters())
    assert 100_000 <= n <= 5_000_000, n
    assert type(a).__name__ == "Qwen2_5_VLForConditionalGeneration"


def test_build_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny(seed=0)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("text", TRICKY)
def test_tokenizer_round_trips_any_text(tiny_policy, text):
    tok = tiny_policy.tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text


def test_special_tokens_are_single_ids_and_prompts_are_short(tiny_policy):
    from arft_envs.prompts import CODING_SYSTEM_PROMPT

    tok = tiny_policy.tokenizer
    for special in SPECIAL_TOKENS:
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1
    # Trained merges: far fewer tokens than bytes.
    n = len(tok(CODING_SYSTEM_PROMPT, add_special_tokens=False)["input_ids"])
    assert n < len(CODING_SYSTEM_PROMPT.encode()) / 2.5


def test_chat_template_renders_roles_and_images_in_place(tiny_policy):
    messages = [
        {"role": "system", "content": ({"type": "text", "text": "S"},)},
        {"role": "user", "content": ({"type": "image", "index": 0}, {"type": "text", "text": "Q"})},
        {"role": "assistant", "content": ({"type": "text", "text": "A"},)},
        {"role": "tool", "content": ({"type": "text", "text": "T"}, {"type": "image", "index": 1})},
    ]
    text = tiny_policy.render(messages, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nS<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Q<|im_end|>\n"
        "<|im_start|>assistant\nA<|im_end|>\n"
        "<|im_start|>tool\nT<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_checkpoint_round_trips(tiny_checkpoint, tiny_policy):
    loaded = Policy.from_pretrained(tiny_checkpoint, device="cpu")
    assert loaded.tokenizer.get_vocab() == tiny_policy.tokenizer.get_vocab()
    assert loaded.chat_template == tiny_policy.chat_template
    assert loaded.geometry == tiny_policy.geometry
    for x, y in zip(loaded.model.parameters(), tiny_policy.model.parameters(), strict=True):
        assert torch.equal(x, y)


def test_spec_validation():
    with pytest.raises(ValueError, match="num_heads"):
        TinySpec(hidden_size=64, num_heads=3)
