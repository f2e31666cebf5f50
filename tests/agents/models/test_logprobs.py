"""Chunked log-probs and entropy equal the full computation (values and gradients); CPU settings."""

from __future__ import annotations

import pytest
import torch

from agents.models.logprobs import (
    available_cpus,
    chunk_positions,
    chunked_logprobs,
    cpu_has_fast_bf16,
    default_cpu_threads,
    full_logprobs,
)

torch.set_num_threads(1)


def _problem(seed, shape=(3, 7), hidden=16, vocab=50, bias=False, scale=0.5):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(*shape, hidden, generator=gen).requires_grad_()
    w = (torch.randn(vocab, hidden, generator=gen) * scale).requires_grad_()
    b = torch.randn(vocab, generator=gen) if bias else None
    if b is not None:
        b.requires_grad_()
    t = torch.randint(0, vocab, shape, generator=gen)
    coef = torch.randn(*shape, generator=gen)
    coef_ent = torch.randn(*shape, generator=gen)
    return h, w, b, t, coef, coef_ent


def _grads(fn, h, w, b, t, coef, coef_ent, **kw):
    logp, ent = fn(h, w, t, bias=b, return_entropy=True, **kw)
    loss = (logp * coef).sum() + (ent * coef_ent).sum()
    params = [x for x in (h, w, b) if x is not None]
    return logp.detach(), ent.detach(), torch.autograd.grad(loss, params)


@pytest.mark.parametrize(
    "seed, chunk, temperature, bias",
    [
        (0, 1, 1.0, False),
        (1, 4, 0.7, False),
        (2, 5, 1.3, True),
        (3, 21, 1.0, True),
        (4, 64, 2.0, False),
    ],
)
def test_equal_to_full_computation_values_and_gradients(seed, chunk, temperature, bias):
    args = _problem(seed, bias=bias)
    lp, ent, grads = _grads(chunked_logprobs, *args, temperature=temperature, chunk_size=chunk)
    lp_ref, ent_ref, grads_ref = _grads(full_logprobs, *args, temperature=temperature)
    torch.testing.assert_close(lp, lp_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent, ent_ref, atol=1e-5, rtol=0)
    # Gradients sum over positions in another order (chunk by chunk): within 1e-5 absolute
    # plus 1e-5 relative (float32 round-off on entries of size ~5).
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=1e-5)


def test_logprobs_alone_need_no_entropy_and_backprop():
    h, w, _, t, coef, _ = _problem(5)
    logp, ent = chunked_logprobs(h, w, t, chunk_size=3)
    assert ent is None
    (g_h,) = torch.autograd.grad((logp * coef).sum(), [h])
    ref, _ = full_logprobs(h, w, t)
    (g_ref,) = torch.autograd.grad((ref * coef).sum(), [h])
    torch.testing.assert_close(g_h, g_ref, atol=1e-5, rtol=0)


def test_logprobs_are_normalised_and_entropy_bounded():
    h, w, _, t, _, _ = _problem(6, vocab=13)
    every = torch.arange(13).expand(*t.shape, 13)
    logp, ent = chunked_logprobs(
        h.detach().unsqueeze(-2).expand(*t.shape, 13, h.shape[-1]),
        w.detach(),
        every,
        chunk_size=7,
        return_entropy=True,
    )
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(t.shape), atol=1e-5, rtol=0)
    assert (ent >= -1e-6).all() and (ent <= torch.log(torch.tensor(13.0)) + 1e-5).all()


def test_no_full_logits_tensor_exists(monkeypatch):
    """The largest float tensor made in forward and backward is one chunk × vocabulary."""
    import agents.models.logprobs as mod

    sizes = []
    original = mod._logits

    def spy(h, w, b, t):
        z = original(h, w, b, t)
        sizes.append(z.shape[0])
        return z

    monkeypatch.setattr(mod, "_logits", spy)
    h, w, _, t, coef, coef_ent = _problem(7, shape=(4, 25), vocab=97)
    logp, ent = chunked_logprobs(h, w, t, chunk_size=8, return_entropy=True)
    ((logp * coef).sum() + (ent * coef_ent).sum()).backward()
    assert sizes and max(sizes) == 8
    assert sum(sizes) == 2 * 100  # every position once in forward, once in backward


@pytest.mark.parametrize("entropy_gradient", [False, True])
def test_one_chunk_is_computed_once_and_kept_for_backward(monkeypatch, entropy_gradient):
    """When every position fits in one chunk, backward reuses the forward's probabilities
    instead of recomputing the logits; values and gradients are still the full ones."""
    import agents.models.logprobs as mod

    calls = []
    original = mod._logits

    def spy(h, w, b, t):
        calls.append(h.shape[0])
        return original(h, w, b, t)

    monkeypatch.setattr(mod, "_logits", spy)
    h, w, b, t, coef, coef_ent = _problem(8, shape=(3, 9), vocab=41, bias=True)
    coef_ent = coef_ent if entropy_gradient else torch.zeros_like(coef_ent)
    logp, ent = chunked_logprobs(h, w, t, bias=b, temperature=0.8, return_entropy=True)
    loss = (logp * coef).sum() + ((ent * coef_ent).sum() if entropy_gradient else 0)
    grads = torch.autograd.grad(loss, [h, w, b])
    assert calls == [27]  # forward only
    ref, ref_ent = full_logprobs(h, w, t, bias=b, temperature=0.8, return_entropy=True)
    ref_loss = (ref * coef).sum() + (ref_ent * coef_ent).sum()
    for g, g_ref in zip(grads, torch.autograd.grad(ref_loss, [h, w, b]), strict=True):
        torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logp, ref, atol=1e-5, rtol=0)


def test_empty_and_bad_inputs():
    h = torch.zeros(2, 0, 4, requires_grad=True)
    logp, ent = chunked_logprobs(
        h, torch.zeros(5, 4), torch.zeros(2, 0, dtype=torch.long), return_entropy=True
    )
    assert logp.shape == ent.shape == (2, 0)
    with pytest.raises(ValueError, match="targets"):
        chunked_logprobs(
            torch.zeros(2, 3, 4), torch.zeros(5, 4), torch.zeros(2, 4, dtype=torch.long)
        )
    with pytest.raises(ValueError, match="weight"):
        chunked_logprobs(torch.zeros(2, 4), torch.zeros(5, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        chunked_logprobs(
            torch.zeros(2, 4), torch.zeros(5, 4), torch.zeros(2, dtype=torch.long), temperature=0.0
        )


def test_chunk_positions_fill_the_budget():
    assert chunk_positions(151_669) == 64 * 2**20 // (4 * 151_669) == 110
    assert chunk_positions(10**12) == 1


# Tolerance of bf16 autocast against float32, for logits of an LM's typical spread (std 2):
# bf16 keeps 8 mantissa bits, so the hidden states and weights are rounded by up to 2^-9 of
# their size and each logit moves by ~0.01; the log-sum-exp moves by as much again. 0.05 nats
# bounds that with room, while a path that skipped the float32 upcast before the softmax
# (bf16 log-probs, steps of 2^-8 · |logp|) or summed in bf16 would be off by more.
BF16_TOLERANCE = 0.05


def test_bf16_autocast_matches_float32_within_tolerance():
    h, w, _, t, coef, _ = _problem(8, shape=(4, 33), hidden=64, vocab=1000, scale=0.25)
    ref, ref_ent = full_logprobs(h.detach(), w.detach(), t, return_entropy=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logp, ent = chunked_logprobs(h, w, t, chunk_size=16, return_entropy=True)
    assert logp.dtype == torch.float32
    assert (logp.detach() - ref).abs().max() < BF16_TOLERANCE
    assert (ent.detach() - ref_ent).abs().max() < BF16_TOLERANCE
    # The matmul really ran in bf16 (results differ from fp32, yet within tolerance).
    assert not torch.equal(logp.detach(), ref)
    (g,) = torch.autograd.grad((logp * coef).sum(), [h])
    (g_ref,) = torch.autograd.grad((full_logprobs(h, w, t)[0] * coef).sum(), [h])
    assert g.dtype == h.dtype
    assert (g - g_ref).abs().max() < BF16_TOLERANCE * g_ref.abs().max()


CPUINFO_X86 = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512bw {extra}\n"


@pytest.mark.parametrize(
    "text, fast",
    [
        (CPUINFO_X86.format(extra="avx512_bf16"), True),
        (CPUINFO_X86.format(extra="amx_bf16 amx_tile"), True),
        (CPUINFO_X86.format(extra="avx512_vnni"), False),  # AVX-512 alone only emulates bf16
        ("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n", True),
        ("processor\t: 0\nFeatures\t: fp asimd\n", False),
        ("", False),
    ],
)
def test_fast_bf16_detection_reads_cpu_flags(text, fast):
    assert cpu_has_fast_bf16(text) is fast


def test_fast_bf16_detection_on_this_machine_matches_its_flags():
    try:
        text = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        text = ""
    native = any(f in text.split() for f in ("avx512_bf16", "amx_bf16"))
    assert cpu_has_fast_bf16() is (native or cpu_has_fast_bf16(text))


@pytest.mark.parametrize(
    "cpus, processes, reserved, threads",
    [(2, 1, 1, 1), (16, 1, 1, 15), (16, 4, 0, 4), (16, 4, 1, 3), (1, 1, 1, 1), (4, 8, 1, 1)],
)
def test_default_cpu_threads(cpus, processes, reserved, threads):
    assert default_cpu_threads(processes, reserved, cpus=cpus) == threads


def test_available_cpus_is_positive():
    assert available_cpus() >= 1


# ---------------------------------------------------------------------- on the tiny model


def _full_path(policy, batch, wanted, temperature):
    """Today's computation: the model's logits for every scored position, then log_softmax."""
    ids = batch["input_ids"]
    keep = wanted.any(dim=0).nonzero().squeeze(1)
    logits = policy.model(**batch, use_cache=False, logits_to_keep=keep - 1).logits
    logp_all = torch.log_softmax(logits.float() / temperature, dim=-1)
    out = torch.zeros(ids.shape)
    out[:, keep] = logp_all.gather(-1, ids[:, keep].unsqueeze(-1)).squeeze(-1)
    ent = torch.zeros(ids.shape)
    ent[:, keep] = -(logp_all.exp() * logp_all).sum(-1)
    return out * wanted, ent * wanted


def _image_batch(policy):
    import numpy as np

    from agents.policy import ModelInput

    rng = np.random.default_rng(0)
    msgs = [
        {"role": "system", "content": ({"type": "text", "text": "Answer."},)},
        {
            "role": "user",
            "content": ({"type": "image", "index": 0}, {"type": "text", "text": "Q?"}),
        },
    ]
    image = rng.integers(0, 256, size=(56, 84, 3), dtype=np.uint8)
    text = policy.render(msgs, add_generation_prompt=True)
    pixels, grid = policy.process_images([image])
    prompt_ids = policy.encode(text, [policy.geometry.tokens(56, 84)])
    answer = policy.tokenizer("<answer> 42 </answer>", add_special_tokens=False)["input_ids"]
    inputs = [
        ModelInput(prompt_ids + answer, pixels, grid),
        ModelInput(policy.encode(policy.render(msgs[:1], add_generation_prompt=True), []) + answer),
    ]
    batch = policy.collate(inputs)
    mask = torch.zeros_like(batch["input_ids"])
    mask[0, len(prompt_ids) :] = 1
    mask[1, 3 : len(inputs[1].input_ids)] = 1
    return batch, mask


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_policy_scoring_is_chunked_and_equals_full_logits(tiny_policy, temperature):
    from agents.models.logprobs import _HEAD_OK

    batch, mask = _image_batch(tiny_policy)
    wanted = batch["attention_mask"].bool() & mask.bool()
    wanted[:, 0] = False
    params = [p for p in tiny_policy.model.parameters() if p.requires_grad]
    coef = torch.randn(wanted.shape, generator=torch.Generator().manual_seed(1))

    def run(fn):
        logp, ent = fn()
        loss = (logp * coef).sum() + 0.1 * ent.sum()
        return logp.detach(), ent.detach(), torch.autograd.grad(loss, params, allow_unused=True)

    lp, ent, grads = run(
        lambda: tiny_policy.forward_logprobs(
            batch, temperature=temperature, mask=mask, return_entropy=True
        )
    )
    assert _HEAD_OK.get(tiny_policy.model) is True  # the chunked path ran
    ref_lp, ref_ent, ref_grads = run(lambda: _full_path(tiny_policy, batch, wanted, temperature))
    torch.testing.assert_close(lp, ref_lp, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent, ref_ent, atol=1e-5, rtol=0)
    assert (lp[~wanted] == 0).all() and (lp[wanted] < 0).all()
    for g, g_ref in zip(grads, ref_grads, strict=True):
        if g_ref is None:
            assert g is None or not g.any()
            continue
        torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=1e-5)


def test_a_model_whose_head_is_not_linear_uses_full_logits(tiny_policy):
    """A model that post-processes its logits (soft-capping here) fails the head check, and
    scoring falls back to the full logits: the results are still the model's."""
    from agents.models.logprobs import _HEAD_OK, model_logprobs

    batch, mask = _image_batch(tiny_policy)
    wanted = batch["attention_mask"].bool() & mask.bool()
    model = tiny_policy.model

    def capped(**kwargs):
        out = model(**kwargs)
        out.logits = 3.0 * torch.tanh(out.logits / 3.0)
        return out

    class Wrapped(torch.nn.Module):  # a distinct model object for the verdict cache
        def __init__(self):
            super().__init__()
            self.inner = model

        def get_decoder(self):
            return model.get_decoder()

        def get_output_embeddings(self):
            return model.get_output_embeddings()

    wrapped = Wrapped()
    with torch.no_grad():
        model.lm_head.weight.mul_(64.0)  # large logits, so the cap changes them
        try:
            assert model_logprobs(wrapped, batch, wanted, run=capped) is None
        finally:
            model.lm_head.weight.div_(64.0)
    assert _HEAD_OK[wrapped] is False
