"""Scoring: padding a batch of sequences (with their images) for the model, and the
per-token log-probs of given tokens in one batched forward pass — what a trainer calls.

The functions take the :class:`~agents.policy.Policy`; its methods of the same names are the
public way in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from agents.models import families
from agents.models.logprobs import model_logprobs

if TYPE_CHECKING:
    from agents.policy import Policy


@dataclass
class ModelInput:
    """One sequence for the model: token ids and the images its placeholders stand for.

    ``pixel_values`` is (n_patches, patch_dim) and ``image_grid_thw`` is (n_images, 3), in the
    order the images appear in ``input_ids``; both are ``None`` for a text-only sequence.
    """

    input_ids: list[int]
    pixel_values: torch.Tensor | None = None
    image_grid_thw: torch.Tensor | None = None


def collate(
    policy: Policy, inputs: Sequence[ModelInput], padding_side: str = "right"
) -> dict[str, torch.Tensor]:
    """Pad a batch: ``input_ids`` and ``attention_mask`` (B, L), and for a VLM
    ``pixel_values`` (all patches, in batch order), ``image_grid_thw`` and
    ``mm_token_type_ids``. Right padding for scoring, left padding for generation."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    length = max(len(x.input_ids) for x in inputs)
    ids = torch.full((len(inputs), length), policy.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(inputs), length), dtype=torch.long)
    for row, x in enumerate(inputs):
        n = len(x.input_ids)
        span = slice(length - n, length) if padding_side == "left" else slice(0, n)
        ids[row, span] = torch.tensor(x.input_ids, dtype=torch.long)
        mask[row, span] = 1
    batch = {"input_ids": ids.to(policy.device), "attention_mask": mask.to(policy.device)}
    if policy.is_multimodal:
        batch.update(families.batch_extras(batch["input_ids"], policy.image_token_id))
        pixels = [x.pixel_values for x in inputs if x.pixel_values is not None]
        grids = [x.image_grid_thw for x in inputs if x.image_grid_thw is not None]
        if pixels:
            batch["pixel_values"] = torch.cat(pixels).to(policy.device, policy.dtype)
            batch["image_grid_thw"] = torch.cat(grids).to(policy.device)
    return batch


def forward_logprobs(
    policy: Policy,
    batch: dict[str, torch.Tensor],
    *,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
    return_entropy: bool = False,
    model: Any = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs of a right-padded batch, with gradients.

    Returns ``(logprobs, entropy)``, each (B, L): ``logprobs[b, t] = log p(ids[b, t] |
    ids[b, :t])`` at temperature ``temperature``, 0 at t = 0, at padding, and where
    ``mask`` (B, L) is 0 — the logits of those positions are never computed, which saves
    memory on long prompts. ``entropy`` (None unless asked) is the entropy of the
    distribution each token was drawn from. ``model`` runs the forward pass instead of
    ``policy.model`` (a trainer passes its DDP/FSDP-wrapped module, which shares the weights).
    """
    ids = batch["input_ids"]
    wanted = batch["attention_mask"].bool()
    if mask is not None:
        wanted = wanted & mask.to(ids.device).bool()
    wanted[:, 0] = False
    keep = wanted.any(dim=0).nonzero().squeeze(1)  # positions t whose token is scored
    if keep.numel() == 0:
        zeros = torch.zeros(ids.shape, dtype=torch.float32, device=ids.device)
        return zeros, (zeros.clone() if return_entropy else None)
    run = _causal_only(batch)
    chunked = model_logprobs(
        _scored_module(policy, model),
        run,
        wanted,
        temperature=temperature,
        return_entropy=return_entropy,
        run=model,
    )  # no (B, K, V) float tensor; None: this model needs the full logits below
    if chunked is not None:
        return chunked
    model = policy.model if model is None else model
    outputs = model(**run, use_cache=False, logits_to_keep=keep - 1)
    logits = outputs.logits.float() / temperature  # (B, K, V)
    logp_all = torch.log_softmax(logits, dim=-1)
    token_logp = logp_all.gather(-1, ids[:, keep].unsqueeze(-1)).squeeze(-1)  # (B, K)
    out = torch.zeros(ids.shape, dtype=token_logp.dtype, device=ids.device)
    out[:, keep] = token_logp
    out = out * wanted
    entropy = None
    if return_entropy:
        ent = -(logp_all.exp() * logp_all).sum(-1)  # (B, K)
        entropy = torch.zeros_like(out)
        entropy[:, keep] = ent
        entropy = entropy * wanted
    return out, entropy


def _causal_only(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``batch`` without its attention mask when every row is right-padded (ones, then
    zeros): the causal mask alone then gives each real token the same context, since the
    padding only ever follows it, and the model attends causally (sdpa's causal kernel, no
    (B, 1, L, L) mask built and applied). The padded positions are never scored."""
    mask = batch["attention_mask"]
    if mask.shape[1] < 2 or not bool((mask[:, 1:] <= mask[:, :-1]).all() & mask[:, 0].all()):
        return batch
    return {k: v for k, v in batch.items() if k != "attention_mask"}


def _scored_module(policy: Policy, model: Any) -> Any:
    """The module whose decoder and output layer compute ``model``'s logits: the policy's own
    model for ``None`` or a DDP/FSDP/DeepSpeed wrapper of it (``.module``), else ``model``
    unwrapped — a separate network such as the trainer's frozen reference, whose hidden
    states a hook on the policy's decoder would never see."""
    if model is None:
        return policy.model
    inner = model
    while not isinstance(inner, type(policy.model)) and hasattr(inner, "module"):
        inner = inner.module
    return inner


@torch.no_grad()
def sequence_logprobs(
    policy: Policy,
    inputs: Sequence[ModelInput],
    masks: Sequence[Sequence[int]] | None = None,
    *,
    temperature: float = 1.0,
    batch_size: int = 8,
) -> list[list[float]]:
    """Log-probs (no gradient) of each input's tokens, one list per input, in chunks."""
    results = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start : start + batch_size]
        batch = policy.collate(chunk)
        mask = None
        if masks is not None:
            mask = torch.zeros_like(batch["input_ids"])
            for row, m in enumerate(masks[start : start + batch_size]):
                mask[row, : len(m)] = torch.tensor(list(m))
        logp, _ = policy.forward_logprobs(batch, temperature=temperature, mask=mask)
        for row, x in enumerate(chunk):
            results.append(logp[row, : len(x.input_ids)].tolist())
    return results
