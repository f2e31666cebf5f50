"""Image sizing and the per-episode image-token budget.

A vision-language model turns an image of H×W pixels into (H/f)·(W/f) tokens, f being the
patch size times the merge size (28 for Qwen2-VL and Qwen2.5-VL). Tools that return an image
every turn can push an episode past the context or the memory of the device, which peers
report as "image features and image tokens do not match" crashes or OOMs mid-run. This module
decides, before anything reaches the model, the size of every image in an episode.

**Sizing.** Each image keeps its aspect ratio, its sides become multiples of f, and its area
is brought into ``[min_pixels, max_pixels]`` (the processor's limits unless overridden).
Extreme aspect ratios are clamped rather than refused.

**The budget rule.** When the images of an episode would need more than
``max_image_tokens`` tokens, the newest image keeps its size and, until the total fits:

1. the oldest image that is still above the minimum size is downscaled to at most half its
   tokens;
2. when every older image is at the minimum, the oldest one is dropped: the model sees
   ``[image omitted: image budget]`` in its place;
3. when only the newest image is left, it is downscaled to fit.

Every change is recorded as an :class:`ImageEvent`, and the rollout copies the events into
the trajectory. Nothing here raises on an image; a bad configuration fails at construction.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

DROPPED_TEXT = "[image omitted: image budget]"
TEXT_ONLY_TEXT = "[image omitted: the model reads text only]"


@dataclass
class ImageBudget:
    """How big images may be, alone and per episode.

    Attributes:
        max_image_tokens: the most image tokens one episode may hold (all its images).
        min_pixels: the smallest image area; ``None`` takes the processor's value.
        max_pixels: the largest image area; ``None`` takes the processor's value.
    """

    max_image_tokens: int = 16384
    min_pixels: int | None = None
    max_pixels: int | None = None

    def __post_init__(self):
        if self.max_image_tokens < 1:
            raise ValueError(f"max_image_tokens must be >= 1, got {self.max_image_tokens}")
        for name in ("min_pixels", "max_pixels"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        if (
            self.min_pixels is not None
            and self.max_pixels is not None
            and self.min_pixels > self.max_pixels
        ):
            raise ValueError(
                f"min_pixels ({self.min_pixels}) must not exceed max_pixels ({self.max_pixels})"
            )


@dataclass(frozen=True)
class ImageGeometry:
    """What the model's vision tower needs to know to size an image.

    ``factor`` is the side of the square of pixels that becomes one token (patch × merge).
    """

    factor: int
    min_pixels: int
    max_pixels: int

    def __post_init__(self):
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")
        if not 1 <= self.min_pixels <= self.max_pixels:
            raise ValueError(f"need 1 <= min_pixels <= max_pixels, got {self}")

    @property
    def min_tokens(self) -> int:
        return self.tokens(*self.fit(1, 1))

    def tokens(self, height: int, width: int) -> int:
        """Image tokens of an image already sized by :meth:`fit`."""
        return (height // self.factor) * (width // self.factor)

    def fit(self, height: int, width: int, max_pixels: int | None = None) -> tuple[int, int]:
        """The (height, width) an image of this size is resized to: sides multiples of
        ``factor``, area in ``[min_pixels, max_pixels]``, aspect ratio kept as far as possible."""
        f = self.factor
        hi = self.max_pixels if max_pixels is None else max(min(max_pixels, self.max_pixels), 1)
        lo = min(self.min_pixels, hi)
        height, width = max(int(height), 1), max(int(width), 1)
        # The area is at least one token and at most what `hi` allows.
        min_side_units = 1
        max_units = max(hi // (f * f), 1)
        scale = 1.0
        area = height * width
        if area > hi:
            scale = math.sqrt(hi / area)
        elif area < lo:
            scale = math.sqrt(lo / area)
        h_units = max(round(height * scale / f), min_side_units)
        w_units = max(round(width * scale / f), min_side_units)
        # Clamp extreme aspect ratios: the long side gives way.
        while h_units * w_units > max_units:
            if h_units >= w_units:
                h_units = max(min(h_units - 1, max_units // w_units), 1)
            else:
                w_units = max(min(w_units - 1, max_units // h_units), 1)
        while h_units * w_units * f * f < lo:
            # Grow the short side (or the other one if that would pass the maximum).
            grow_h = (h_units + 1) * w_units <= max_units
            grow_w = h_units * (w_units + 1) <= max_units
            if grow_h and (h_units <= w_units or not grow_w):
                h_units += 1
            elif grow_w:
                w_units += 1
            else:
                break
        return h_units * f, w_units * f


@dataclass
class ImageEvent:
    """One decision of the budget rule, for the trajectory record."""

    turn: int
    slot: int
    action: str  # "downscale" | "drop" | "text_only"
    from_tokens: int
    to_tokens: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ImageSlot:
    """One image part of the conversation and the size the model sees it at."""

    source: np.ndarray
    turn: int
    size: tuple[int, int]
    dropped: bool = False

    @property
    def natural(self) -> tuple[int, int]:
        return int(self.source.shape[0]), int(self.source.shape[1])


@dataclass
class ImagePlan:
    """The sizes of every image of one episode under the budget rule."""

    geometry: ImageGeometry | None  # None: the model reads text only
    max_tokens: int
    slots: list[ImageSlot] = field(default_factory=list)
    events: list[ImageEvent] = field(default_factory=list)

    def tokens(self, slot: ImageSlot) -> int:
        if slot.dropped or self.geometry is None:
            return 0
        return self.geometry.tokens(*slot.size)

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens(s) for s in self.slots)

    def add(self, images: list[np.ndarray], turn: int) -> bool:
        """Add the images that arrived at ``turn`` and enforce the budget.

        Returns True when an image that was already in the context changed (the context
        before this turn was rewritten).
        """
        first_new = len(self.slots)
        for image in images:
            if self.geometry is None:
                slot = ImageSlot(image, turn, (0, 0), dropped=True)
                self.slots.append(slot)
                self.events.append(ImageEvent(turn, len(self.slots) - 1, "text_only", 0, 0))
                continue
            size = self.geometry.fit(image.shape[0], image.shape[1])
            self.slots.append(ImageSlot(image, turn, size))
        if self.geometry is None:
            return False
        return self._enforce(turn, first_new)

    def _enforce(self, turn: int, first_new: int) -> bool:
        geo = self.geometry
        rewritten = False
        live = [i for i, s in enumerate(self.slots) if not s.dropped]
        floor: set[int] = set()  # images that cannot get smaller
        while self.total_tokens > self.max_tokens and live:
            newest = live[-1]
            older = live[:-1]
            shrinkable = [
                i for i in older if i not in floor and self.tokens(self.slots[i]) > geo.min_tokens
            ]
            if shrinkable:
                i = shrinkable[0]
                slot = self.slots[i]
                before = self.tokens(slot)
                target = max(before // 2, geo.min_tokens)
                size = geo.fit(*slot.natural, max_pixels=target * geo.factor**2)
                if geo.tokens(*size) >= before:
                    floor.add(i)
                    continue
                slot.size = size
                self._log(turn, i, "downscale", before)
            elif older:
                i = older[0]
                before = self.tokens(self.slots[i])
                self.slots[i].dropped = True
                live.remove(i)
                self._log(turn, i, "drop", before)
            else:
                slot = self.slots[newest]
                before = self.tokens(slot)
                room = self.max_tokens - (self.total_tokens - before)
                size = geo.fit(*slot.natural, max_pixels=max(room, 1) * geo.factor**2)
                if room >= geo.min_tokens and geo.tokens(*size) < before:
                    slot.size = size
                    self._log(turn, newest, "downscale", before)
                else:
                    slot.dropped = True
                    live.remove(newest)
                    self._log(turn, newest, "drop", before)
            if self.events and self.events[-1].slot < first_new:
                rewritten = True
        return rewritten

    def _log(self, turn: int, slot: int, action: str, before: int) -> None:
        self.events.append(ImageEvent(turn, slot, action, before, self.tokens(self.slots[slot])))


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` resized to ``(height, width)`` with bicubic filtering (a no-op when equal)."""
    if image.shape[:2] == tuple(size):
        return image
    from PIL import Image

    pil = Image.fromarray(np.ascontiguousarray(image))
    return np.asarray(pil.resize((size[1], size[0]), Image.BICUBIC))
