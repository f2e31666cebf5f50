"""What arft needs to know about a vision-language model family, in one place.

A family is named by its Hugging Face ``model_type``. For each supported VLM family arft needs:

- the image placeholder token its chat template emits (and the id the model expands it to);
- how many pixels become one image token: the vision tower's patch size times its spatial
  merge size (28 for Qwen2-VL and Qwen2.5-VL), and the processor's pixel limits;
- the extra tensors a forward pass takes besides ids, pixels and the image grid
  (``mm_token_type_ids``: 1 on image tokens).

A text-only causal LM is no family: it has none of these. Adding a VLM family means adding its
``model_type`` to :data:`VISION_FAMILIES` and, where it differs from Qwen's, its facts here.
"""

from __future__ import annotations

from typing import Any

import torch

from agents.images import ImageBudget, ImageGeometry

VISION_FAMILIES: tuple[str, ...] = ("qwen2_vl", "qwen2_5_vl")
DEFAULT_IMAGE_TOKEN = "<|image_pad|>"


def check_supported(config: Any, where: object) -> bool:
    """Whether the checkpoint ``config`` is a vision-language model (True) or a text-only LM
    (False); an unsupported VLM family raises, naming the supported ones."""
    if getattr(config, "vision_config", None) is None:
        return False
    if config.model_type not in VISION_FAMILIES:
        raise ValueError(
            f"{where}: vision-language model type {config.model_type!r} is not supported yet; "
            f"supported: {', '.join(VISION_FAMILIES)} and text-only causal LMs"
        )
    return True


def image_token(tokenizer: Any) -> str:
    """The image placeholder the chat template emits (one per image, before expansion)."""
    return getattr(tokenizer, "image_token", None) or DEFAULT_IMAGE_TOKEN


def image_token_id(model: Any) -> int | None:
    """The id an image placeholder is expanded to, as the model's config names it."""
    return getattr(model.config, "image_token_id", None)


def geometry(image_processor: Any, budget: ImageBudget) -> ImageGeometry:
    """Token size and pixel limits of the processor, the budget's overrides applied."""
    size = getattr(image_processor, "size", None) or {}

    def limit(key: str, legacy: str) -> int | None:
        value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
        return value or getattr(image_processor, legacy, None)

    min_pixels = budget.min_pixels or limit("shortest_edge", "min_pixels")
    max_pixels = budget.max_pixels or limit("longest_edge", "max_pixels")
    if not min_pixels or not max_pixels:
        raise ValueError(
            f"{type(image_processor).__name__} states no pixel limits; set ImageBudget "
            "min_pixels and max_pixels"
        )
    factor = int(image_processor.patch_size) * int(image_processor.merge_size)
    return ImageGeometry(factor, int(min_pixels), int(max(max_pixels, min_pixels)))


def batch_extras(input_ids: torch.Tensor, image_token_id: int | None) -> dict[str, torch.Tensor]:
    """The tensors a VLM forward pass takes besides ids, mask, pixels and grid."""
    return {"mm_token_type_ids": (input_ids == image_token_id).int()}
