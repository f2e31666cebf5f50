"""Token log-probs and entropies whose memory does not scale with batch × sequence × vocabulary.

A policy-gradient loss needs, for every scored token, ``log p(token)`` and often the entropy of
the distribution it was drawn from. Computed the plain way — logits for every position, then
``log_softmax`` — a batch of B sequences of L tokens holds several float tensors of
B × L × V: at Qwen's V = 151,669 one 16 × 1,024 batch is 10 GB per tensor, and autograd keeps
them for the backward pass. :func:`chunked_logprobs` computes the same numbers from the final
hidden states and the output layer's weight, a chunk of positions at a time, inside one custom
autograd function: the forward pass keeps only the hidden states, the log-sum-exp and the
entropy of each position (a few floats per token), and the backward pass recomputes each
chunk's logits to form its gradient. The largest float tensor that ever exists is one chunk ×
V (``chunk_size`` positions; by default the chunk is sized to a 64 MiB logits block). When
all positions fit in one chunk, the forward pass keeps that chunk's probabilities for the
backward pass instead of recomputing them (a small batch, where the recomputation was a
third of the log-probs' time).

The numbers equal the full computation's: the same matmul in the same dtype, then float32
``log_softmax`` (tests compare log-probs and gradients within 1e-5 in float32).

Two CPU helpers live here too, since they decide how fast this maths runs on a CPU:

- :func:`cpu_has_fast_bf16` — whether this CPU does bfloat16 arithmetic natively, so that
  ``mixed_precision="auto"`` may choose bf16 there;
- :func:`default_cpu_threads` — the torch thread count for a process that shares the machine
  with other training processes and sandbox workers.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any

import torch

# Size of one chunk's float32 logits block; chunk_size=None picks the positions that fill it.
CHUNK_BYTES = 64 * 2**20


def chunk_positions(vocab_size: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    """Positions per chunk so that one chunk's float32 logits take about ``chunk_bytes``."""
    return max(1, chunk_bytes // (4 * max(int(vocab_size), 1)))


def chunked_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float = 1.0,
    bias: torch.Tensor | None = None,
    chunk_size: int | None = None,
    return_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``log_softmax(hidden @ weight.T + bias) / T)[targets]`` and the entropy, by chunks.

    Args:
        hidden: final hidden states (..., H), the output layer's input.
        weight: the output layer's weight (V, H).
        targets: token ids (...), the ids whose log-probs are wanted.
        temperature: the logits are divided by it before the softmax.
        bias: the output layer's bias (V,), if it has one.
        chunk_size: positions per chunk; ``None`` sizes a chunk to a 64 MiB logits block.
        return_entropy: also return the entropy of each position's distribution.

    Returns:
        ``(logprobs, entropy)``, float32 tensors shaped like ``targets`` (``entropy`` is None
        unless asked). Both are differentiable with respect to ``hidden``, ``weight`` and
        ``bias``. Under ``torch.autocast`` the matmul runs in the autocast dtype, as the
        model's own output layer would.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if hidden.shape[:-1] != targets.shape:
        raise ValueError(
            f"hidden {tuple(hidden.shape)} and targets {tuple(targets.shape)} disagree: "
            "hidden must be targets' shape plus the hidden size"
        )
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(f"weight must be (V, {hidden.shape[-1]}), got {tuple(weight.shape)}")
    lead = targets.shape
    if targets.numel() == 0:
        empty = hidden.new_zeros(lead, dtype=torch.float32) + 0 * hidden.sum()
        return empty, (empty.clone() if return_entropy else None)
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        compute = torch.get_autocast_dtype(device)
    else:
        compute = torch.promote_types(hidden.dtype, weight.dtype)
    chunk = chunk_size or chunk_positions(weight.shape[0])
    logp, ent = _ChunkedLogprobs.apply(
        hidden.reshape(-1, hidden.shape[-1]),
        weight,
        bias,
        targets.reshape(-1),
        float(temperature),
        int(chunk),
        bool(return_entropy),
        compute,
    )
    return logp.reshape(lead), (ent.reshape(lead) if return_entropy else None)


def _logits(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, t: float) -> torch.Tensor:
    """float32 logits of one chunk at temperature ``t``, the matmul in ``w``'s dtype."""
    z = torch.nn.functional.linear(h.to(w.dtype), w, None if b is None else b.to(w.dtype))
    return z.float() if t == 1.0 else z.float() / t


class _ChunkedLogprobs(torch.autograd.Function):
    """Forward: per-chunk logits → log-prob of the target and entropy; keeps (N,) floats.
    Backward: recomputes each chunk's logits; d logp/dz = onehot − p and
    dH/dz = −p · (log p + H), both divided by the temperature.

    When every position fits in one chunk, the forward pass keeps that chunk's
    probabilities (and log-probabilities, for an entropy gradient) instead, and the backward
    pass uses them rather than recomputing the logits: the same numbers, one matmul and one
    exponential fewer, and no larger than the one chunk the backward pass would make anyway.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, temperature, chunk, want_entropy, compute):
        n = hidden.shape[0]
        # an unused output (the entropy, often) gets None as its gradient, not zeros to add
        ctx.set_materialize_grads(False)
        keep = n <= chunk and any(ctx.needs_input_grad[:3])  # one chunk, kept for backward
        w = weight.detach().to(compute)
        logp = hidden.new_empty(n, dtype=torch.float32)
        recompute = any(ctx.needs_input_grad[:3]) and not keep
        lse = hidden.new_empty(n, dtype=torch.float32)  # kept for backward when recomputing
        ent = hidden.new_empty(n, dtype=torch.float32) if want_entropy else None
        kept = ()
        with torch.no_grad(), torch.autocast(hidden.device.type, enabled=False):
            for s in range(0, n, chunk):
                z = _logits(hidden[s : s + chunk], w, bias, temperature)
                # z[target] - logsumexp(z): log_softmax's float32 rounding is coarser (~1e-5
                # at |z| ~ 40, a real model's logits)
                z_lse = torch.logsumexp(z, dim=-1)
                lse[s : s + chunk] = z_lse
                logp[s : s + chunk] = z.gather(1, targets[s : s + chunk, None]).squeeze(1) - z_lse
                if ent is None and not keep:
                    continue
                log_p = z.sub_(z_lse[:, None])  # in place: one chunk buffer less
                p = torch.exp(log_p)
                if ent is not None:
                    # -sum p log p, not lse - sum p z: no cancellation of two large numbers
                    ent[s : s + chunk] = -(p * log_p).sum(-1)
                if keep:
                    kept = (p, log_p) if want_entropy else (p,)
        if not recompute:
            lse = lse[:0]
        ctx.save_for_backward(hidden, weight, bias, targets, lse, ent, *kept)
        ctx.settings = (temperature, chunk, compute)
        if ent is None:
            ent = logp.new_zeros(0)
        return logp, ent

    @staticmethod
    def backward(ctx, g_logp, g_ent):
        hidden, weight, bias, targets, lse, ent, *kept = ctx.saved_tensors
        temperature, chunk, compute = ctx.settings
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        use_ent = ent is not None and g_ent is not None and g_ent.numel() > 0
        w = weight.detach().to(compute)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        grad_w = grad_w if need_w else None
        grad_b = torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device)
        grad_b = grad_b if need_b and bias is not None else None
        if g_logp is None and not use_ent:
            return _grads(None if grad_h is None else grad_h.zero_(), grad_w, grad_b, weight, bias)
        with torch.no_grad(), torch.autocast(hidden.device.type, enabled=False):
            for s in range(0, hidden.shape[0], chunk):
                h = hidden[s : s + chunk].to(compute)
                if kept:  # the forward's one chunk
                    p = kept[0]
                    log_p = kept[1] if use_ent else None
                else:
                    log_p = _logits(h, w, bias, temperature).sub_(lse[s : s + chunk, None])
                    p = torch.exp(log_p)
                if g_logp is not None:
                    g = g_logp[s : s + chunk].float()
                    gz = p * -g[:, None]
                    gz.scatter_add_(1, targets[s : s + chunk, None], g[:, None])
                else:
                    gz = torch.zeros_like(p)
                if use_ent:  # dH/dz = -p (log p + H)
                    term = log_p + ent[s : s + chunk, None]
                    gz.sub_(term.mul_(p).mul_(g_ent[s : s + chunk].float()[:, None]))
                if temperature != 1.0:
                    gz /= temperature
                gz_c = gz.to(compute)
                if grad_h is not None:
                    grad_h[s : s + chunk] = (gz_c @ w).to(hidden.dtype)
                if grad_w is not None:
                    grad_w += (gz_c.T @ h).float()
                if grad_b is not None:
                    grad_b += gz.sum(0)
        return _grads(grad_h, grad_w, grad_b, weight, bias)


def _grads(grad_h, grad_w, grad_b, weight, bias) -> tuple:
    """:class:`_ChunkedLogprobs`'s backward outputs, one per forward input."""
    return (
        grad_h,
        None if grad_w is None else grad_w.to(weight.dtype),
        None if grad_b is None else grad_b.to(bias.dtype),
        None,
        None,
        None,
        None,
        None,
    )


def full_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float = 1.0,
    bias: torch.Tensor | None = None,
    return_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The plain computation (all logits at once), for tests and the benchmark's baseline."""
    logits = torch.nn.functional.linear(hidden, weight, bias).float() / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1) if return_entropy else None
    return logp, entropy


# ---------------------------------------------------------------------- CPU settings

_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86: native bf16 dot products / AMX tiles
_CPUINFO = Path("/proc/cpuinfo")


def cpu_has_fast_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes in bfloat16 natively (so bf16 autocast speeds it up).

    Read from the CPU flags in ``/proc/cpuinfo`` (``cpuinfo`` overrides its text): x86 CPUs
    with ``avx512_bf16`` (Cooper Lake, Zen 4 and later) or ``amx_bf16`` (Sapphire Rapids and
    later), and ARM CPUs whose ``Features`` list ``bf16`` (Neoverse V1/N2, Graviton 3 and
    later). ``torch.backends.cpu.get_cpu_capability()`` is not enough: it says ``AVX512`` for
    CPUs that only emulate bf16, where bf16 is slower than float32. False when the flags
    cannot be read (not Linux).
    """
    if cpuinfo is None:
        try:
            cpuinfo = _CPUINFO.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        flags = set(value.split())
        if key == "flags" and flags.intersection(_BF16_FLAGS):
            return True
        if key == "features" and "bf16" in flags:
            return True
    return False


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_cpu_threads(processes: int = 1, reserved: int = 1, cpus: int | None = None) -> int:
    """Torch threads for one of ``processes`` training processes on this machine.

    ``reserved`` CPUs are left to the sandbox workers that run tool code beside training;
    the rest are shared evenly by the processes, at least one thread each. torch's own default
    (one thread per core in every process) oversubscribes the cores as soon as a worker or a
    second process runs, and each op then waits for its slowest thread.
    """
    cpus = available_cpus() if cpus is None else cpus
    return max(1, (cpus - max(reserved, 0)) // max(processes, 1))


# ---------------------------------------------------------------------- on a transformers model

# model -> whether the output layer on the captured hidden states gives the model's logits
_HEAD_OK: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def output_head(model: Any) -> tuple[Any, Any] | None:
    """``(decoder, lm_head)`` of a transformers causal LM or VLM (peft-wrapped or not): the
    module whose output's ``last_hidden_state`` feeds the output layer, and that layer. None
    when the model does not expose them (``get_decoder`` / ``get_output_embeddings``)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    get_decoder = getattr(base, "get_decoder", None)
    get_head = getattr(base, "get_output_embeddings", None)
    if get_decoder is None or get_head is None:
        return None
    decoder, head = get_decoder(), get_head()
    if decoder is None or not isinstance(head, torch.nn.Linear):
        return None
    return decoder, head


def model_logprobs(
    model: Any,
    batch: dict[str, torch.Tensor],
    wanted: torch.Tensor,
    *,
    temperature: float = 1.0,
    return_entropy: bool = False,
    run: Any = None,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """Log-probs (and entropies) of ``batch["input_ids"]`` where ``wanted`` (B, L) is true,
    through :func:`chunked_logprobs`: (B, L) float32 tensors, 0 where not wanted.

    ``run`` does the forward pass (a DDP-wrapped ``model``; default ``model``), asked for the
    logits of the last position only; the final hidden states are taken from the decoder's
    output by a forward hook. The first call checks that the output layer applied to them
    gives the model's own logits; where it does not (a model that post-processes its logits),
    or the model exposes no decoder, None is returned and the caller uses the full logits.
    """
    parts = output_head(model)
    if parts is None or _HEAD_OK.get(model) is False:
        return None
    decoder, head = parts
    captured: list[torch.Tensor] = []

    def grab(_module, _args, output):
        hidden = getattr(output, "last_hidden_state", None)
        captured.append(output[0] if hidden is None else hidden)

    handle = decoder.register_forward_hook(grab)
    try:
        outputs = (model if run is None else run)(**batch, use_cache=False, logits_to_keep=1)
    finally:
        handle.remove()
    ids = batch["input_ids"]
    if len(captured) != 1 or captured[0].shape[:2] != ids.shape:
        _HEAD_OK[model] = False
        return None
    hidden = captured[0]
    if not head_gives_logits(model, head, hidden[:, -1:], outputs.logits[:, -1:]):
        return None
    rows, cols = wanted.nonzero(as_tuple=True)
    logp, ent = chunked_logprobs(
        hidden[rows, cols - 1],
        head.weight,
        ids[rows, cols],
        temperature=temperature,
        bias=head.bias,
        chunk_size=chunk_size,
        return_entropy=return_entropy,
    )
    out = torch.zeros(ids.shape, dtype=torch.float32, device=ids.device).index_put(
        (rows, cols), logp
    )
    entropy = None
    if return_entropy:
        entropy = torch.zeros_like(out).index_put((rows, cols), ent)
    return out, entropy


def head_gives_logits(model: Any, head: Any, hidden: torch.Tensor, logits: torch.Tensor) -> bool:
    """Whether ``model``'s output layer ``head`` applied to the decoder's final hidden states
    gives the model's own logits, so that they may be computed from the hidden states alone
    (by chunks here, one position at a time in generation's decode loop). Checked once per
    model on the first ``hidden`` (..., H) and ``logits`` (..., V) of the same positions, then
    remembered; False for a model that post-processes its logits (a soft cap, a scale)."""
    known = _HEAD_OK.get(model)
    if known is not None:
        return known
    with torch.no_grad():
        mine = head(hidden).float()
        theirs = logits.float()
        ok = bool(torch.allclose(mine, theirs, atol=1e-3 + 1e-2 * theirs.abs().max().item()))
    _HEAD_OK[model] = ok
    return ok


def use_full_logits(model: Any, full: bool = True) -> None:
    """Make scoring of ``model`` compute the full (B × K × V) logits instead of chunks (the
    baseline that ``benchmarks/real_model_step.py`` measures the chunked path against);
    ``full=False`` goes back to chunks (re-checked on the next call)."""
    if full:
        _HEAD_OK[model] = False
    else:
        _HEAD_OK.pop(model, None)
