"""The policy: log-probs from generation equal a fresh forward pass; stops; templates; loading.
The tests that take ``policy`` run with ``tiny`` and with ``tiny-qwen`` (Qwen's real tokenizer
and template)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from agents.images import resize
from agents.models.tiny import build_config, build_image_processor, build_tokenizer
from agents.policy import LoraSettings, ModelInput, Policy, TemplateError

SYSTEM = {"role": "system", "content": ({"type": "text", "text": "Answer in <answer></answer>."},)}


def user(text, images=0):
    parts = [{"type": "image", "index": i} for i in range(images)]
    return {"role": "user", "content": (*parts, {"type": "text", "text": text})}


def prompt(policy, text, sizes=()):
    """A ModelInput for a one-question conversation with images of the given sizes."""
    rng = np.random.default_rng(len(text))
    images = [rng.integers(0, 256, size=(*s, 3), dtype=np.uint8) for s in sizes]
    rendered = policy.render([SYSTEM, user(text, len(images))], add_generation_prompt=True)
    if not images or not policy.is_multimodal:
        return ModelInput(policy.encode(rendered, [] if not policy.is_multimodal else []))
    shown = [resize(im, policy.geometry.fit(*im.shape[:2])) for im in images]
    pixel_values, grid = policy.process_images(shown)
    tokens = [policy.geometry.tokens(*im.shape[:2]) for im in shown]
    return ModelInput(policy.encode(rendered, tokens), pixel_values, grid)


def assert_logprobs_match(policy, inputs, generations, temperature=1.0, tol=1e-4):
    full = [
        ModelInput(x.input_ids + g.token_ids, x.pixel_values, x.image_grid_thw)
        for x, g in zip(inputs, generations, strict=True)
    ]
    masks = [
        [0] * len(x.input_ids) + [1] * len(g.token_ids)
        for x, g in zip(inputs, generations, strict=True)
    ]
    fresh = policy.sequence_logprobs(full, masks, temperature=temperature)
    for x, g, lp in zip(inputs, generations, fresh, strict=True):
        assert len(g.token_ids) == len(g.logprobs) > 0
        np.testing.assert_allclose(lp[len(x.input_ids) :], g.logprobs, atol=tol, rtol=0)


@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.7, 0.9), (0.0, 1.0)])
def test_generation_logprobs_equal_forward_pass(policy, temperature, top_p):
    inputs = [
        prompt(policy, "what colour?", [(100, 150)]),
        prompt(policy, "no image here"),
        prompt(policy, "two images", [(300, 60), (40, 40)]),
    ]
    torch.manual_seed(0)
    gens = policy.generate(inputs, max_new_tokens=24, temperature=temperature, top_p=top_p)
    assert_logprobs_match(policy, inputs, gens, temperature or 1.0)
    # Batched generation equals one-at-a-time generation under greedy decoding.
    if temperature == 0.0:
        alone = [policy.generate([x], max_new_tokens=24, temperature=0.0)[0] for x in inputs]
        assert [g.token_ids for g in alone] == [g.token_ids for g in gens]


def test_stop_strings_cut_right_after_the_first_occurrence(policy):
    inputs = [prompt(policy, f"question {i}") for i in range(4)]
    torch.manual_seed(1)
    gens = policy.generate(inputs, max_new_tokens=40, stop_strings=(" ",))
    reasons = {g.finish_reason for g in gens}
    assert "stop" in reasons
    tok = policy.tokenizer
    for g in gens:
        if g.finish_reason == "stop":
            assert " " in tok.decode(g.token_ids)
            assert " " not in tok.decode(g.token_ids[:-1])


def test_cut_finds_closing_tags_and_eos(policy):
    tok = policy.tokenizer
    ids = tok("<think> x </think><answer> 4 </answer> trailing", add_special_tokens=False)[
        "input_ids"
    ]
    cut, reason = policy._cut(ids, ("</answer>",), window=12)
    assert reason == "stop" and tok.decode(ids[:cut]).endswith("</answer>")
    eos = policy.eos_token_ids[0]
    assert policy._cut([5, 6, eos, 7], ("</answer>",), 12) == (3, "eos")
    assert policy._cut([5, 6, 7], ("</answer>",), 12) == (3, "length")


def test_stop_checks_skip_tokens_that_cannot_end_a_stop_string(policy):
    from agents.policy import ACTION_STOP_STRINGS
    from agents.policy.generation import _StopOnStrings

    tok = policy.tokenizer
    stops = ACTION_STOP_STRINGS
    finals = policy._stop_finals(stops)
    assert finals == {i for i in range(len(tok)) if ">" in tok.decode([i])}
    assert 0 < len(finals) < len(tok) // 4  # most decoding steps decode nothing
    assert policy._stop_finals(("结束",)) is None  # a non-ASCII end: check every token

    pieces = ["</code>", "</answer>", "<search> q </search", ">", "x>y", " </", "code>", "a b"]
    rng = np.random.default_rng(0)
    window = max(len(s) for s in stops) + 2
    eos = set(policy.eos_token_ids)
    cut_some = 0
    for _ in range(150):
        ids: list[int] = []
        for _ in range(6):
            if rng.random() < 0.5:
                ids += tok.encode(str(rng.choice(pieces)), add_special_tokens=False)
            else:
                ids += [int(i) for i in rng.integers(300, len(tok) - 64, size=3)]
        # The first position whose whole decoded prefix holds a stop string, by brute force.
        first = next(
            (t + 1 for t in range(len(ids)) if any(s in tok.decode(ids[: t + 1]) for s in stops)),
            None,
        )
        expected = (first, "stop") if first and not eos & set(ids[:first]) else None
        got = policy._cut(ids, stops, window)
        if expected:
            assert got == expected, tok.decode(ids)
            cut_some += 1
        # The stopping criterion fires first at the same step, filtered or not.
        filtered = _StopOnStrings(tok, stops, 0, window, finals)
        unfiltered = _StopOnStrings(tok, stops, 0, window, None)
        seq = torch.tensor([ids])
        fired = [bool(filtered(seq[:, : t + 1], None)[0]) for t in range(len(ids))]
        fired_all = [bool(unfiltered(seq[:, : t + 1], None)[0]) for t in range(len(ids))]
        assert (fired + [True]).index(True) == (fired_all + [True]).index(True)
    assert cut_some > 30


def test_special_tokens_are_never_sampled(policy):
    inputs = [prompt(policy, "x", [(56, 56)]) for _ in range(4)]
    torch.manual_seed(2)
    gens = policy.generate(inputs, max_new_tokens=64, stop_strings=())
    suppressed = set(policy._suppressed)
    assert policy.image_token_id in suppressed
    assert not suppressed & {t for g in gens for t in g.token_ids}


def test_forward_logprobs_mask_and_entropy(policy):
    x = prompt(policy, "entropy", [(80, 80)])
    batch = policy.collate([x, ModelInput(x.input_ids[:10])])
    mask = torch.zeros_like(batch["input_ids"])
    mask[0, -5:] = 1
    logp, ent = policy.forward_logprobs(batch, mask=mask, return_entropy=True)
    assert logp.shape == ent.shape == batch["input_ids"].shape
    assert (logp[mask == 0] == 0).all() and (ent[mask == 0] == 0).all()
    assert (logp[0, -5:] < 0).all() and (ent[0, -5:] > 0).all()


# Where each template writes the opening of an assistant turn.
ASSISTANT_OPENING = {
    "tiny": "{{- '<|im_start|>' ~ message['role'] ~ '\\n' -}}",
    "tiny-qwen": "{{- '<|im_start|>' + message.role + '\\n' + content }}",
}
# Each template with its tool branch writing text parts only, as some real templates do.
TOOL_IMAGES_DROPPED = {
    "tiny": (
        "{%- if part['type'] == 'image' -%}",
        "{%- if part['type'] == 'image' and message['role'] != 'tool' -%}",
    ),
    "tiny-qwen": (
        "{{- arft_content(message.content) }}",
        "{%- for part in message.content %}{%- if part.type == 'text' %}{{- part.text }}"
        "{%- endif %}{%- endfor %}",
    ),
}


def test_template_that_rewrites_history_is_refused(policy):
    # Like templates that add an empty think block to past assistant turns only.
    opening = ASSISTANT_OPENING[policy.name]
    rewriting = policy.chat_template.replace(
        opening,
        "{%- if message['role'] == 'assistant' and not loop.last -%}{{- '<think></think>' -}}"
        "{%- endif -%}" + opening,
    )
    assert rewriting.count("<think></think>") == policy.chat_template.count("<think></think>") + 1
    with pytest.raises(TemplateError, match="append-only"):
        dataclasses.replace(policy, chat_template=rewriting)


def test_template_that_ignores_images_is_refused(policy):
    blind = policy.chat_template.replace("<|vision_start|><|image_pad|><|vision_end|>", "")
    assert blind != policy.chat_template
    with pytest.raises(TemplateError, match="image"):
        dataclasses.replace(policy, chat_template=blind)


def test_template_that_drops_tool_images_stops_the_run_naming_template_and_fix(policy, tmp_path):
    old, new = TOOL_IMAGES_DROPPED[policy.name]
    assert policy.chat_template.count(old) == 1
    dropping = policy.chat_template.replace(old, new)
    file = tmp_path / "dropping.jinja"
    file.write_text(dropping, encoding="utf-8")
    with pytest.raises(TemplateError) as caught:
        Policy.from_pretrained(policy.name, device="cpu", chat_template=file)
    message = str(caught.value)
    assert "drops the images of tool-role messages" in message
    assert str(file) in message and policy.name in message  # names the template
    assert "Fix: pass chat_template=" in message and "tool branch" in message
    # The templates the models ship pass the same audit (the policy fixture loaded).
    assert (
        policy.render(
            [user("q", 1), {"role": "tool", "content": ({"type": "image", "index": 1},)}]
        ).count(policy.image_token)
        == 2
    )


def test_template_without_tool_role_maps_tool_to_user(policy):
    strict = (
        "{%- for m in messages %}{%- if m.role == 'tool' %}"
        "{{- raise_exception('no tool role') }}{%- endif %}{%- endfor %}" + policy.chat_template
    )
    mapped = dataclasses.replace(policy, chat_template=strict, role_map={})
    assert mapped.role_map == {"tool": "user"}
    text = mapped.render([user("q"), {"role": "tool", "content": ({"type": "text", "text": "T"},)}])
    assert text.count("<|im_start|>user") == 2


def test_missing_checkpoint_says_nothing_is_downloaded(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        Policy.from_pretrained(tmp_path / "Qwen2.5-VL-7B-Instruct")


def test_text_only_causal_lm_from_local_folder(text_lm_checkpoint):
    policy = Policy.from_pretrained(text_lm_checkpoint, device="cpu")
    assert not policy.is_multimodal and policy.image_processor is None
    rendered = policy.render([SYSTEM, user("look", images=1)], add_generation_prompt=True)
    assert "[image omitted" in rendered and "<|image_pad|>" not in rendered
    inputs = [ModelInput(policy.encode(rendered)), ModelInput(policy.encode(rendered[:40]))]
    torch.manual_seed(0)
    gens = policy.generate(inputs, max_new_tokens=16)
    assert_logprobs_match(policy, inputs, gens)


def test_qwen2_vl_checkpoint_loads_and_scores(tmp_path):
    from shared_helpers import seeded_model
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    tok = build_tokenizer()
    base = build_config(tok)
    config = Qwen2VLConfig(
        text_config=base.text_config.to_dict(),
        vision_config={
            "depth": 1,
            "embed_dim": 32,
            "hidden_size": 64,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
        },
        image_token_id=base.image_token_id,
        video_token_id=base.video_token_id,
        vision_start_token_id=base.vision_start_token_id,
        vision_end_token_id=base.vision_end_token_id,
    )
    model = seeded_model(Qwen2VLForConditionalGeneration, config, tok)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    build_image_processor().save_pretrained(tmp_path)
    policy = Policy.from_pretrained(tmp_path, device="cpu")
    assert policy.is_multimodal and type(policy.model).__name__ == "Qwen2VLForConditionalGeneration"
    inputs = [prompt(policy, "q", [(90, 120)]), prompt(policy, "text only")]
    torch.manual_seed(0)
    gens = policy.generate(inputs, max_new_tokens=12)
    assert_logprobs_match(policy, inputs, gens)


def test_lora_with_gradient_checkpointing_trains_only_adapters():
    policy = Policy.from_pretrained(
        "tiny", device="cpu", lora=LoraSettings(r=4), gradient_checkpointing=True
    )
    assert any(getattr(m, "gradient_checkpointing", False) for m in policy.model.modules())
    trainable = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert not any("visual" in n for n in trainable)
    x = prompt(policy, "grad", [(56, 84)])
    policy.model.train()
    batch = policy.collate([x])
    mask = torch.zeros_like(batch["input_ids"])
    mask[0, -4:] = 1
    logp, _ = policy.forward_logprobs(batch, mask=mask)
    logp.sum().backward()
    grads = [p.grad for n, p in policy.model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_lora_adapters_round_trip(tmp_path):
    policy = Policy.from_pretrained("tiny", device="cpu", lora=LoraSettings(r=4))
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)  # as if trained
    policy.save_pretrained(tmp_path)
    loaded = Policy.from_pretrained("tiny", device="cpu", adapter=tmp_path)
    x = prompt(policy, "adapters", [(56, 56)])
    mask = [[1] * len(x.input_ids)]
    before = policy.sequence_logprobs([x], mask)[0]
    after = loaded.sequence_logprobs([x], mask)[0]
    base = Policy.from_pretrained("tiny", device="cpu").sequence_logprobs([x], mask)[0]
    np.testing.assert_allclose(after, before, atol=1e-5)
    assert not np.allclose(base, before, atol=1e-3)
    with pytest.raises(ValueError, match="not both"):
        Policy.from_pretrained("tiny", lora=LoraSettings(), adapter=tmp_path)
