"""The fast generation path against the reference one, and the scoring of a separate network.

:func:`~agents.policy.generation.decode_loop` (what ``Policy.generate`` runs) must compute what
``model.generate`` computes (:func:`~agents.policy.generation.hf_generate`): the same greedy
tokens, log-probs, ends and finish reasons — with images, left padding, stop strings, EOS,
LoRA and a text-only model. Sampled tokens come from :func:`sample_tokens`, tested on its own.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from agents.models.logprobs import output_head
from agents.policy import ACTION_STOP_STRINGS, LoraSettings, ModelInput, Policy, lean_decoder
from agents.policy import generation as G

SYSTEM = {"role": "system", "content": ({"type": "text", "text": "Answer in <answer></answer>."},)}


def prompt(policy, text, sizes=()):
    rng = np.random.default_rng(len(text))
    images = [rng.integers(0, 256, size=(*s, 3), dtype=np.uint8) for s in sizes]
    parts = [{"type": "image", "index": i} for i in range(len(images))]
    user = {"role": "user", "content": (*parts, {"type": "text", "text": text})}
    rendered = policy.render([SYSTEM, user], add_generation_prompt=True)
    if not images:
        return ModelInput(policy.encode(rendered))
    pixel_values, grid = policy.process_images(images)
    tokens = [policy.geometry.tokens(*im.shape[:2]) for im in images]
    return ModelInput(policy.encode(rendered, tokens), pixel_values, grid)


def both(policy, inputs, *, max_new=20, temperature=0.0, top_p=1.0, stops=ACTION_STOP_STRINGS):
    """(decode_loop's, hf_generate's) raw turns of the same left-padded batch."""
    out = []
    for run in (G.decode_loop, G.hf_generate):
        batch = policy.collate(inputs, padding_side="left")
        torch.manual_seed(0)
        out.append(run(policy, batch, max_new, temperature, top_p, stops))
    return out


def assert_same(fast, reference):
    rows, logprobs, ends = fast
    ref_rows, ref_logprobs, ref_ends = reference
    assert ends == ref_ends
    for r, (end, _) in enumerate(ends):
        assert rows[r][:end] == ref_rows[r][:end]
        np.testing.assert_allclose(logprobs[r, :end], ref_logprobs[r, :end], atol=1e-6, rtol=0)


@pytest.fixture()
def mixed(tiny_policy):
    """Rows of different lengths (left padding), two of them with images."""
    return [
        prompt(tiny_policy, "what colour?", [(56, 84)]),
        prompt(tiny_policy, "no image here, and a longer question than the others"),
        prompt(tiny_policy, "two images", [(112, 28), (28, 28)]),
    ]


def test_decode_loop_is_the_fast_path_for_the_tiny_model(tiny_policy):
    assert G.loop_driver(tiny_policy.model) == ("cache", {"logits_to_keep": 1})


def test_greedy_turns_equal_generate(tiny_policy, mixed):
    fast, reference = both(tiny_policy, mixed, max_new=24)
    assert_same(fast, reference)
    assert {reason for _, reason in fast[2]} == {"length"}


def test_stop_strings_end_rows_where_generate_ends_them(tiny_policy, mixed):
    # Stop strings the greedy rows really write: a piece of each row's own text.
    rows, _, _ = G.hf_generate(
        tiny_policy, tiny_policy.collate(mixed, padding_side="left"), 24, 0.0, 1.0, ()
    )
    texts = [tiny_policy.tokenizer.decode(r) for r in rows]
    stops = tuple(t[len(t) // 2 : len(t) // 2 + 2] for t in texts if len(t) > 8)
    assert stops
    fast, reference = both(tiny_policy, mixed, max_new=24, stops=stops)
    assert_same(fast, reference)
    assert "stop" in {reason for _, reason in fast[2]}


def test_eos_ends_a_row_and_the_others_run_on(tiny_policy, mixed, monkeypatch):
    rows, _, _ = G.hf_generate(
        tiny_policy, tiny_policy.collate(mixed, padding_side="left"), 24, 0.0, 1.0, ()
    )
    eos = rows[1][5]  # the sixth greedy token of row 1 plays the EOS token
    config = copy.deepcopy(tiny_policy._clean_generation_config)
    config.eos_token_id = [eos]
    monkeypatch.setattr(tiny_policy, "eos_token_ids", [eos])
    monkeypatch.setattr(tiny_policy, "_clean_generation_config", config)
    fast, reference = both(tiny_policy, mixed, max_new=24, stops=())
    assert_same(fast, reference)
    assert fast[2][1] == (rows[1].index(eos) + 1, "eos")
    assert any(reason == "length" for _, reason in fast[2])
    # After its end a row holds pad tokens, as generate leaves it.
    end = fast[2][1][0]
    assert set(fast[0][1][end:]) <= {tiny_policy.pad_token_id}


def test_sampled_rows_end_where_cut_says(tiny_policy, mixed):
    stops = (" ", "e")
    batch = tiny_policy.collate(mixed * 3, padding_side="left")
    torch.manual_seed(4)
    rows, logprobs, ends = G.decode_loop(tiny_policy, batch, 30, 0.8, 0.9, stops)
    window = G._window(stops)
    assert ends == [tiny_policy._cut(r, stops, window) for r in rows]
    assert {"stop"} <= {reason for _, reason in ends}
    assert all(float(lp) <= 0 for r, (end, _) in enumerate(ends) for lp in logprobs[r, :end])


def test_text_only_causal_lm_greedy_equals_generate(text_lm_checkpoint):
    policy = Policy.from_pretrained(text_lm_checkpoint, device="cpu")
    assert G.loop_driver(policy.model) is not None
    inputs = [prompt(policy, "a"), prompt(policy, "a much longer question with more words")]
    assert_same(*both(policy, inputs, max_new=16))
    assert lean_decoder._LEAN_OK.get(output_head(policy.model)[0]) is True  # Qwen2: the lean step


def test_lora_policy_greedy_equals_generate():
    policy = Policy.from_pretrained("tiny", device="cpu", lora=LoraSettings(r=4, dropout=0.0))
    with torch.no_grad():  # adapters that change the output, so that they are really used
        for name, param in policy.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    policy.model.eval()
    inputs = [prompt(policy, "lora"), prompt(policy, "with an image", [(28, 56)])]
    fast, reference = both(policy, inputs, max_new=16)
    assert_same(fast, reference)
    assert lean_decoder._LEAN_OK.get(output_head(policy.model)[0]) is True  # it calls the adapters
    with policy.model.disable_adapter():
        plain, _ = both(policy, inputs, max_new=16)
    assert plain[0] != fast[0]  # the adapters changed what was generated


def test_sample_tokens_draws_from_the_distribution():
    probs = torch.tensor(
        [
            [0.0, 0.5, 0.0, 0.25, 0.25, 0.0],
            [0.1, 0.2, 0.3, 0.4, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
        ]
    )
    torch.manual_seed(0)
    n = 20_000
    draws = G.sample_tokens(probs.repeat(n, 1)).view(n, 3).T  # (3, n)
    counts = torch.stack([torch.bincount(d, minlength=6) for d in draws]).float() / n
    # 4.5 standard deviations of a frequency estimated from n draws, at most
    np.testing.assert_allclose(counts, probs, atol=4.5 * 0.5 / n**0.5, rtol=0)
    assert (counts[probs == 0] == 0).all()


def test_sample_tokens_never_draws_a_zero_probability_token(monkeypatch):
    probs = torch.tensor([[0.0, 0.3, 0.0, 0.7, 0.0, 0.0], [0.2, 0.8, 0.0, 0.0, 0.0, 0.0]])
    for u, expected in [(0.0, [1, 0]), (1 - 2**-53, [3, 1])]:  # the extremes of torch.rand

        def rand(*size, u=u, **kwargs):
            return torch.full(size[0] if len(size) == 1 else size, u, dtype=kwargs["dtype"])

        monkeypatch.setattr(torch, "rand", rand)
        assert G.sample_tokens(probs).tolist() == expected


def test_a_model_generate_must_sample_is_not_driven_by_the_loop():
    @dataclasses.dataclass
    class Config:
        is_encoder_decoder: bool = True

    class EncoderDecoder(torch.nn.Module):
        config = Config()

        def forward(self, input_ids=None, position_ids=None, cache=None):
            return input_ids

        def _prepare_position_ids_for_generation(self, inputs, kwargs):
            return None

    assert G.loop_driver(EncoderDecoder()) is None


def test_scoring_a_separate_network_uses_its_own_hidden_states(tiny_policy):
    """A trainer scores its frozen reference with ``model=reference``: the chunked log-probs
    must read the reference's hidden states, not leave the policy's decoder hook empty (which
    used to switch the policy to the full-logits path for the rest of the run)."""
    from agents.models.logprobs import _HEAD_OK

    reference = copy.deepcopy(tiny_policy.model).eval()
    with torch.no_grad():
        for param in reference.parameters():
            param.add_(0.05 * torch.randn_like(param))
    inputs = [prompt(tiny_policy, "score me"), prompt(tiny_policy, "and me", [(28, 28)])]
    batch = tiny_policy.collate(inputs)
    with torch.no_grad():
        got, _ = tiny_policy.forward_logprobs(batch, model=reference)
        logits = reference(**batch, use_cache=False).logits.float()
    ids = batch["input_ids"]
    expected = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
    expected = expected * batch["attention_mask"][:, 1:]
    torch.testing.assert_close(got[:, 1:], expected, atol=1e-5, rtol=0)
    assert _HEAD_OK.get(reference) is True  # the chunked path ran on the reference
    assert _HEAD_OK.get(tiny_policy.model) is not False


def test_the_lean_step_runs_for_the_tiny_model_and_gives_generate_s_turns(tiny_policy, mixed):
    """The decode steps after the first go through :class:`LeanDecoder` (checked against the
    decoder's own forward on the first), and the turns are still generate's."""
    decoder = output_head(tiny_policy.model)[0]
    lean_decoder._LEAN_OK.pop(decoder, None)
    fast, reference = both(tiny_policy, mixed, max_new=24)
    assert lean_decoder._LEAN_OK.get(decoder) is True
    assert_same(fast, reference)


def test_the_lean_step_grows_its_buffers(tiny_policy, mixed, monkeypatch):
    monkeypatch.setattr(lean_decoder.LeanDecoder, "BLOCK", 3)  # many growths within 20 steps
    fast, reference = both(tiny_policy, mixed * 2, max_new=20)
    assert_same(fast, reference)


def test_a_decoder_whose_layers_compute_something_else_keeps_its_own_forward(monkeypatch):
    """A model whose attention is not the one LeanDecoder writes out (here: its output
    scaled) fails the first-step check and is decoded by its own forward, still exactly."""
    policy = Policy.from_pretrained("tiny", device="cpu")
    decoder = output_head(policy.model)[0]
    attention = decoder.layers[0].self_attn
    plain = attention.forward

    def scaled(*args, **kwargs):
        out, weights = plain(*args, **kwargs)
        return 1.5 * out, weights

    monkeypatch.setattr(attention, "forward", scaled)
    inputs = [prompt(policy, "short"), prompt(policy, "a longer one, with an image", [(28, 28)])]
    fast, reference = both(policy, inputs, max_new=16)
    assert lean_decoder._LEAN_OK.get(decoder) is False
    assert_same(fast, reference)


def test_repeated_prompts_are_prefilled_once_and_decode_as_generate(tiny_policy):
    """A group's rows share a prompt: the prefill runs on the distinct rows only, and every
    row still gets generate's turn."""
    texts = ["the first prompt", "a second, longer prompt than the first one"]
    inputs = [prompt(tiny_policy, texts[i % 2]) for i in range(6)]
    batch = tiny_policy.collate(inputs, padding_side="left")
    first, shared = G.distinct_rows(batch)
    assert first.tolist() == [0, 1] or first.tolist() == [1, 0]
    assert [int(first[s]) % 2 for s in shared] == [0, 1, 0, 1, 0, 1]
    sizes = []
    decoder = output_head(tiny_policy.model)[0]
    handle = decoder.register_forward_hook(lambda _m, args, out: sizes.append(out[0].shape[0]))
    try:
        fast, reference = both(tiny_policy, inputs, max_new=12)
    finally:
        handle.remove()
    assert_same(fast, reference)
    assert sizes[0] == 2  # decode_loop's prefill: one row per distinct prompt
    with_image = [prompt(tiny_policy, "x", [(28, 28)])] * 2
    assert G.distinct_rows(tiny_policy.collate(with_image, padding_side="left")) == (None, None)
