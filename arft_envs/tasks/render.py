"""Text-to-image helpers for synthetic tasks: fonts, text masks, and simple scenes.

Everything works offline with nothing beyond Pillow itself. Text is drawn with Pillow's
built-in scalable font (``ImageFont.load_default(size=...)``, Aileron Regular, Pillow >= 10.1
with FreeType); where that font is not available, Pillow's small bitmap font is rendered at
its native size and scaled up, so a generator still works, only with blockier letters.

A :class:`Scene` is a plain description (background gradient, panels, text boxes) that
:func:`render_scene` turns into an ``H×W×3`` ``uint8`` RGB array. Generators build scenes
from a seed and render them only when an image is needed, so a task record stays small and
its pixels are reproducible from the seed alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Color = tuple[int, int, int]
Box = tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels, x2/y2 exclusive

# Line spacing, as a fraction of the font size, between the lines of a multi-line text.
LINE_SPACING = 0.3


# ----------------------------------------------------------------------------- fonts and text


@lru_cache(maxsize=128)
def scalable_font(size: int) -> ImageFont.FreeTypeFont | None:
    """Pillow's built-in scalable font at ``size`` pixels, or ``None`` when it is unavailable
    (Pillow < 10.1, or a Pillow built without FreeType)."""
    try:
        font = ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return None
    return font if isinstance(font, ImageFont.FreeTypeFont) else None


@lru_cache(maxsize=1)
def _bitmap_font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    loader = getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)
    return loader()


_MEASURE = ImageDraw.Draw(Image.new("L", (1, 1)))


def _native_bbox(text: str, font, spacing: int, align: str) -> tuple[int, int, int, int]:
    left, top, right, bottom = _MEASURE.multiline_textbbox(
        (0, 0), text, font=font, spacing=spacing, align=align
    )
    return int(np.floor(left)), int(np.floor(top)), int(np.ceil(right)), int(np.ceil(bottom))


def _bitmap_scale(size: int) -> float:
    _, top, _, bottom = _native_bbox("Hg", _bitmap_font(), 0, "left")
    return size / max(bottom - top, 1)


def text_size(text: str, size: int, align: str = "center") -> tuple[int, int]:
    """The ``(width, height)`` in pixels of ``text`` (lines split on ``\\n``) at font ``size``."""
    font = scalable_font(size)
    if font is not None:
        left, top, right, bottom = _native_bbox(text, font, round(size * LINE_SPACING), align)
        return right - left, bottom - top
    font = _bitmap_font()
    left, top, right, bottom = _native_bbox(text, font, 2, align)
    scale = _bitmap_scale(size)
    return max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale))


def text_mask(text: str, size: int, align: str = "center") -> Image.Image:
    """A tight greyscale (mode ``"L"``) coverage mask of ``text`` at font ``size``."""
    font = scalable_font(size)
    spacing = round(size * LINE_SPACING)
    if font is None:
        font, spacing = _bitmap_font(), 2
    left, top, right, bottom = _native_bbox(text, font, spacing, align)
    mask = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
    ImageDraw.Draw(mask).multiline_text(
        (-left, -top), text, fill=255, font=font, spacing=spacing, align=align
    )
    if scalable_font(size) is None:
        mask = mask.resize(text_size(text, size, align), Image.Resampling.BILINEAR)
    return mask


def fit_font_size(
    text: str, max_width: int, max_height: int, max_size: int = 400, min_size: int = 8
) -> int:
    """The largest font size (at most ``max_size``, at least ``min_size``) at which ``text``
    fits in ``max_width`` × ``max_height`` pixels."""
    lo, hi = min_size, max(min_size, max_size)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        width, height = text_size(text, mid)
        if width <= max_width and height <= max_height:
            lo = mid
        else:
            hi = mid - 1
    return lo


def draw_text(
    image: Image.Image, text: str, box: Box, size: int, fill: Color, align: str = "center"
) -> Box:
    """Draw ``text`` at font ``size`` centred in ``box`` of an RGB ``image``; return the box
    the ink block occupies (clipped to the image)."""
    mask = text_mask(text, size, align)
    x1, y1, x2, y2 = box
    left = x1 + (x2 - x1 - mask.width) // 2 if align == "center" else x1
    top = y1 + (y2 - y1 - mask.height) // 2
    image.paste(Image.new("RGB", mask.size, fill), (left, top), mask)
    return (
        max(left, 0),
        max(top, 0),
        min(left + mask.width, image.width),
        min(top + mask.height, image.height),
    )


# ----------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class Panel:
    """A filled rectangle (a sign, a label, a sheet of paper) with an optional outline."""

    box: Box
    fill: Color
    outline: Color | None = None
    width: int = 0
    radius: int = 0


@dataclass(frozen=True)
class TextBlock:
    """Text (lines split on ``\\n``) drawn at font ``size``, centred in ``box`` or, with
    ``align="left"``, flush with its left edge."""

    text: str
    box: Box
    size: int
    fill: Color
    align: str = "center"


@dataclass(frozen=True)
class Scene:
    """A picture description: a vertical gradient background, then items drawn in order."""

    height: int
    width: int
    top: Color
    bottom: Color
    items: tuple[Panel | TextBlock, ...] = ()


def vertical_gradient(height: int, width: int, top: Color, bottom: Color) -> np.ndarray:
    """An ``H×W×3`` ``uint8`` image fading from colour ``top`` to colour ``bottom``."""
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    rows = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)
    return np.ascontiguousarray(np.broadcast_to(np.rint(rows), (height, width, 3)).astype(np.uint8))


def render_scene(scene: Scene) -> np.ndarray:
    """Draw ``scene``; returns a fresh, writable ``H×W×3`` ``uint8`` RGB array."""
    image = Image.fromarray(vertical_gradient(scene.height, scene.width, scene.top, scene.bottom))
    draw = ImageDraw.Draw(image)
    for item in scene.items:
        if isinstance(item, Panel):
            x1, y1, x2, y2 = item.box
            draw.rounded_rectangle(
                (x1, y1, x2 - 1, y2 - 1),
                radius=item.radius,
                fill=item.fill,
                outline=item.outline,
                width=item.width,
            )
        else:
            draw_text(image, item.text, item.box, item.size, item.fill, item.align)
    return np.array(image)


# ----------------------------------------------------------------------------- colours


def luminance(color: Sequence[int]) -> float:
    """Perceived brightness (0–255) of an RGB colour (Rec. 601 weights)."""
    r, g, b = color[:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def contrasting_colors(rng: np.random.Generator, min_gap: float = 140.0) -> tuple[Color, Color]:
    """A random ``(background, foreground)`` pair whose brightness differs by ``min_gap``:
    either a light background with dark ink or a dark background with light ink."""
    while True:
        light = tuple(int(v) for v in rng.integers(180, 256, size=3))
        dark = tuple(int(v) for v in rng.integers(0, 80, size=3))
        if luminance(light) - luminance(dark) >= min_gap:
            break
    return (light, dark) if rng.random() < 0.65 else (dark, light)


def shade(color: Color, amount: float) -> Color:
    """``color`` moved towards white (``amount`` > 0) or black (``amount`` < 0) by |amount|."""
    target = 255.0 if amount > 0 else 0.0
    return tuple(int(round(c + (target - c) * abs(amount))) for c in color)
