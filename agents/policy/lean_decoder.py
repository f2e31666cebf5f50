"""The lean decode step: one new token through a Llama/Qwen-style decoder without the model's
forward (:class:`LeanDecoder`), which :func:`agents.policy.generation.decode_loop` runs from the
second decode step on, once its first step matched the decoder's own forward (remembered per
decoder in ``_LEAN_OK``).
"""

from __future__ import annotations

import weakref
from typing import Any

import torch


class LeanDecoder:
    """The decode step of a Llama/Qwen-style decoder (Qwen2, Qwen2.5-VL's text model, Qwen3,
    Llama, …) without the model's forward: the embedding, each layer's projection modules,
    its RMSNorms, gated MLP, rope and attention written out (the same operations, fewer of
    them and no module calls), the final norm and the output layer — what the decoder
    computes for one new token, with the per-call machinery that dominates a small model's
    step (output capture, mask building, rope per step, a cache object that concatenates)
    left out:

    - the keys and values live in preallocated buffers, written in place (grown by
      ``BLOCK`` positions when full), copied once from the prefill's cache;
    - the rope cosines and sines of every step are computed once, by the decoder's own
      rotary module on the positions generate would pass;
    - the attention mask is the prompt's padding mask, built once and sliced (none when no
      row is padded, as transformers' own sdpa mask is then none).

    :meth:`build` returns None for a decoder it does not recognise (another attention
    implementation, sliding-window layers, a rope that depends on the length). For one it
    does, :meth:`check` compares its first step with the decoder's own forward on the same
    token (once per decoder, remembered): a model whose layers compute something else (a
    different rope, extra norms) keeps the decoder's forward. Modules are called, not their
    weights read, so LoRA adapters (on or off) apply as in the model.
    """

    BLOCK = 256

    def __init__(self, decoder, head, keys, values, mask, cos, sin, length):
        self.decoder, self.head = decoder, head
        self.keys, self.values = keys, values  # per layer (B, kv_heads, capacity, head_dim)
        self.mask = mask  # (B, 1, 1, prompt + steps) bool, or None
        self.cos, self.sin = cos, sin  # (B, 1, steps, head_dim)
        self.length = length  # positions filled in the buffers
        self.step = 0
        self.checked = _LEAN_OK.get(decoder) is True

    @classmethod
    def build(cls, decoder, head, cache, mask, positions, steps: int) -> LeanDecoder | None:
        """The lean step for ``steps`` decode calls after a prefill that left ``cache``
        (transformers' cache), the prompt's ``mask`` (B, P) and its ``positions`` (as the
        model's ``_prepare_position_ids_for_generation`` gave them); None if not possible."""
        if _LEAN_OK.get(decoder) is False or not _lean_structure(decoder):
            return None
        layers = getattr(cache, "layers", None)
        if layers is None or len(layers) != len(decoder.layers):
            return None
        first = getattr(layers[0], "keys", None)
        if not isinstance(first, torch.Tensor) or first.dim() != 4:
            return None
        size, length = mask.shape
        capacity = length + min(steps, cls.BLOCK)
        keys, values = [], []
        for layer in layers:
            k, v = layer.keys, layer.values
            if k.shape[:1] + k.shape[2:3] != (size, length):
                return None
            keys.append(_grown(k, capacity))
            values.append(_grown(v, capacity))
        last = positions[..., -1:]
        ahead = last + torch.arange(1, steps + 1, device=last.device)  # (..., B, steps)
        if ahead.dim() == 3 and ahead.shape[0] == 4:  # Qwen-VL: text positions come first
            ahead = ahead[1:]
        sample = decoder.embed_tokens.weight[:1][None]  # the rope's dtype and device
        cos, sin = decoder.rotary_emb(sample, ahead)  # (B, steps, head_dim)
        half = sin.shape[-1] // 2
        sin = torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)  # rotate_half's sign
        padding = None
        if not bool(mask.all()):
            full = torch.cat([mask, mask.new_ones((size, steps))], dim=-1).bool()
            padding = full[:, None, None, :]
        return cls(decoder, head, keys, values, padding, cos[:, None], sin[:, None], length)

    def __call__(self, new: torch.Tensor) -> torch.Tensor:
        """The logits (B, V) float32 after the tokens ``new`` (B,)."""
        decoder, t, n = self.decoder, self.step, self.length
        self._reserve(n + 1)
        cos, sin = self.cos[:, :, t : t + 1], self.sin[:, :, t : t + 1]  # (B, 1, 1, d)
        half = cos.shape[-1] // 2
        mask = None if self.mask is None else self.mask[..., : n + 1]
        hidden = decoder.embed_tokens(new)  # (B, H): one position per row
        size = hidden.shape[0]
        for i, layer in enumerate(decoder.layers):
            attn = layer.self_attn
            x = _norm(layer.input_layernorm, hidden)
            q = _heads(attn, "q", x, size)  # (B, heads, 1, d)
            k = _heads(attn, "k", x, size)  # (B, kv_heads, 1, d)
            v = attn.v_proj(x).view(size, -1, 1, attn.head_dim)
            # rope: x·cos + rotate_half(x)·sin, with rotate_half's minus in ``sin``
            q = q * cos + q.roll(half, -1) * sin
            k = k * cos + k.roll(half, -1) * sin
            self.keys[i][:, :, n] = k[:, :, 0]
            self.values[i][:, :, n] = v[:, :, 0]
            out = _attend(attn, q, self.keys[i][:, :, : n + 1], self.values[i][:, :, : n + 1], mask)
            hidden = hidden + attn.o_proj(out)
            hidden = hidden + _mlp(layer.mlp, _norm(layer.post_attention_layernorm, hidden))
        self.step, self.length = t + 1, n + 1
        return self.head(_norm(decoder.norm, hidden)).float()

    def check(self, new: torch.Tensor, logits: torch.Tensor) -> bool:
        """Run the first step and compare it with ``logits`` (B, V), the decoder's own forward
        on ``new``, within a few rounding errors of the model's dtype; remember the verdict
        for the decoder. True: use this step from now on."""
        with torch.no_grad():
            mine = self(new)
        eps = torch.finfo(self.head.weight.dtype).eps
        scale = 1.0 + float(logits.abs().max())
        self.checked = bool(torch.allclose(mine, logits, rtol=0, atol=64 * eps * scale))
        _LEAN_OK[self.decoder] = self.checked
        return self.checked

    def _reserve(self, n: int) -> None:
        capacity = self.keys[0].shape[2]
        if n <= capacity:
            return
        capacity = min(capacity + self.BLOCK, self.length + self.cos.shape[2] - self.step)
        self.keys = [_grown(k[:, :, : self.length], capacity) for k in self.keys]
        self.values = [_grown(v[:, :, : self.length], capacity) for v in self.values]


# decoder -> whether LeanDecoder's step gives the decoder's own logits
_LEAN_OK: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _lean_structure(decoder: Any) -> bool:
    """Whether ``decoder`` has the parts :class:`LeanDecoder` calls, with sdpa attention over
    every position and a rope that does not depend on the sequence length."""
    config = getattr(decoder, "config", None)
    rotary = getattr(decoder, "rotary_emb", None)
    if config is None or rotary is None or getattr(config, "_attn_implementation", "") != "sdpa":
        return False
    if any(kind != "full_attention" for kind in getattr(config, "layer_types", None) or ()):
        return False
    if getattr(rotary, "rope_type", "default") in ("dynamic", "longrope"):
        return False
    if not all(hasattr(decoder, n) for n in ("embed_tokens", "layers", "norm")):
        return False
    for layer in decoder.layers:
        attn = getattr(layer, "self_attn", None)
        parts = ("input_layernorm", "post_attention_layernorm", "mlp")
        if attn is None or not all(hasattr(layer, n) for n in parts):
            return False
        needed = ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim", "scaling")
        if not all(hasattr(attn, n) for n in needed):
            return False
        if getattr(attn, "sliding_window", None) is not None:
            return False
    return True


def _grown(buffer: torch.Tensor, capacity: int) -> torch.Tensor:
    """``buffer`` (B, heads, n, d) copied to the front of a (B, heads, capacity, d) one."""
    out = buffer.new_empty((*buffer.shape[:2], capacity, buffer.shape[3]))
    out[:, :, : buffer.shape[2]] = buffer
    return out


def _heads(attn: Any, which: str, x: torch.Tensor, size: int) -> torch.Tensor:
    """The query or key heads (B, heads, 1, d) of ``x`` (B, H), through the attention's own
    per-head norm where it has one (Qwen3's ``q_norm``, ``k_norm``)."""
    states = getattr(attn, f"{which}_proj")(x).view(size, -1, 1, attn.head_dim)
    norm = getattr(attn, f"{which}_norm", None)
    return states if norm is None else norm(states)


def _norm(norm: Any, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)``, written out for the usual RMSNorm (float32 statistics, the weight after
    the cast back, as transformers' Llama/Qwen ``RMSNorm``) to spare the module call."""
    eps = getattr(norm, "variance_epsilon", None)
    if eps is None or not type(norm).__name__.endswith("RMSNorm"):
        return norm(x)
    xf = x.float()
    return norm.weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _mlp(mlp: Any, x: torch.Tensor) -> torch.Tensor:
    """``mlp(x)``, written out for the gated MLP (``down(act(gate(x)) · up(x))``)."""
    if not all(hasattr(mlp, n) for n in ("gate_proj", "up_proj", "down_proj", "act_fn")):
        return mlp(x)
    return mlp.down_proj(mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x))


def _attend(attn, q, keys, values, mask) -> torch.Tensor:
    """Attention of one new query per row over the cached ``keys``/``values`` (B, kv_heads,
    n, d), as transformers' sdpa attention computes it; returns (B, heads · d)."""
    size, heads, _, dim = q.shape
    groups = heads // keys.shape[1]
    sdpa = torch.nn.functional.scaled_dot_product_attention
    if groups == 1:
        out = sdpa(q, keys, values, attn_mask=mask, scale=attn.scaling)
    elif mask is None:
        out = sdpa(q, keys, values, scale=attn.scaling, enable_gqa=True)
    else:  # the query heads of a key head as its rows (transformers' pack_gqa)
        packed = q.view(size, heads // groups, groups, dim)
        out = sdpa(packed, keys, values, attn_mask=mask, scale=attn.scaling)
    return out.reshape(size, heads * dim)
